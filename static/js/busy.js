// Every form that posts shows it is working until the answer comes: htmx
// marks its own requests (the htmx-request class); a plain form is marked
// here once it is really sent (confirm.js may have stopped it first).
document.addEventListener('submit', (ev) => {
  const form = ev.target;
  if (ev.defaultPrevented || form.hasAttribute('hx-post')) return;
  if ((form.getAttribute('method') || '').toLowerCase() !== 'post') return;
  setTimeout(() => form.classList.add('busy'), 0);
});
// Back to a page from the history: nothing is running any more.
window.addEventListener('pageshow', () => {
  document.querySelectorAll('form.busy').forEach((f) => f.classList.remove('busy'));
});
