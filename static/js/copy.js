// One-click copy (一键复制): a button with data-copy="<selector>" copies that
// element's text with the Clipboard API (selecting it for a manual copy
// when the browser refuses), then says whether it worked.
document.addEventListener('click', async (ev) => {
  const button = ev.target.closest('button[data-copy]');
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(source.textContent);
    ok = true;
  } catch (e) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  button.dataset.copied = ok ? '1' : '0';
  button.textContent = ok ? button.dataset.done : button.dataset.failed;
});
