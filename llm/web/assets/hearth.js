// Hearth's keys beyond Chainlit's own (Enter sends, Shift+Enter breaks a line): Escape stops a
// streaming reply, as the stop button does. An open dialog or menu (the settings panel, a thread's
// menu) keeps Escape for itself: Chainlit closes it with that key. A tooltip does not count, though
// Radix marks the Escape that dismisses one as handled (defaultPrevented), so that flag is not asked.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (document.querySelector("[role=dialog][data-state=open], [role=alertdialog], [role=menu]")) return;
  const stop = document.getElementById("stop-button");
  if (stop) {
    event.preventDefault();
    stop.click();
  }
});
