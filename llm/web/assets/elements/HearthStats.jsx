// A reply's stats: one muted line, every figure one click away. Chainlit renders this file as a
// custom element (cl.CustomElement(name="HearthStats")); `props` holds {line, details: [...], reply}.
//
// Whether the figures are open is kept by the reply's id outside React: Chainlit's custom-element
// runner evaluates this file again whenever the chat re-renders (each later reply does), which
// mounts a new component, so a useState alone would close every open reply's figures.
import { useState } from "react";

window.hearthStatsOpen = window.hearthStatsOpen || new Set(); // reply ids whose figures are open
const opened = window.hearthStatsOpen;

export default function HearthStats() {
  const [open, setOpen] = useState(() => opened.has(props.reply));
  const toggle = () => {
    if (open) opened.delete(props.reply);
    else opened.add(props.reply);
    setOpen(!open);
  };
  return (
    <div className="hearth-stats text-xs text-muted-foreground">
      <button
        type="button"
        className="hearth-stats-line"
        aria-expanded={open}
        title={open ? "Hide the figures" : "Show every figure"}
        onClick={toggle}
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
