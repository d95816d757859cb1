// Copy buttons: <button data-copy="#id" data-done="Copied"> copies the text
// of the element #id. One listener on the document, so buttons that htmx
// swaps in later work too.
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-copy]");
  if (!b) return;
  const src = document.querySelector(b.dataset.copy);
  if (!src) return;
  const text = src.textContent.trim();
  const done = () => {
    const was = b.textContent;
    b.textContent = b.dataset.done || "✓";
    setTimeout(() => { b.textContent = was; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => {});
  } else {
    const r = document.createRange();
    r.selectNodeContents(src);
    const s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }
});
