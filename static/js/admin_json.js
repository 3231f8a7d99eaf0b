// Back office: a JSON box whose error says "Line 3, column 14: ..." gets its caret put there,
// so the person starts typing where the mistake is.
document.addEventListener("DOMContentLoaded", () => {
  let first = null;
  for (const box of document.querySelectorAll("textarea.json-editor")) {
    const row = box.closest(".form-row, .fieldBox, td");
    const error = row && row.querySelector(".errorlist");
    const found = error && /Line (\d+), column (\d+)/.exec(error.textContent);
    if (!found) continue;
    const lines = box.value.split("\n");
    const line = Math.min(Number(found[1]), lines.length);
    let offset = Number(found[2]) - 1;
    for (let n = 0; n < line - 1; n++) offset += lines[n].length + 1;
    box.setSelectionRange(offset, offset);
    first = first || box;
  }
  if (first) first.focus();
});
