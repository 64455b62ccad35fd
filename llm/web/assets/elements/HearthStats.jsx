// A reply's stats: one muted line, every figure one click away. Chainlit renders this file as a
// custom element (cl.CustomElement(name="HearthStats")); `props` holds {line, details: [...]}.
import { useState } from "react";

export default function HearthStats() {
  const [open, setOpen] = useState(false);
  return (
    <div className="hearth-stats text-xs text-muted-foreground">
      <button
        type="button"
        className="hearth-stats-line"
        aria-expanded={open}
        title={open ? "Hide the figures" : "Show every figure"}
        onClick={() => setOpen(!open)}
      >
        {props.line}
        <span aria-hidden="true">{open ? " ▴" : " ▾"}</span>
      </button>
      {open && (
        <ul className="hearth-stats-details">
          {props.details.map((figure, i) => (
            <li key={i}>{figure}</li>
          ))}
        </ul>
      )}
    </div>
  );
}
