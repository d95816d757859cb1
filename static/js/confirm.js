// Confirmation before destroying anything: a plain form with
// data-confirm="<text>" asks first and is sent only when the user agrees.
// (Forms sent by htmx use hx-confirm instead.)
document.addEventListener('submit', (ev) => {
  const form = ev.target.closest('form[data-confirm]');
  if (form && !window.confirm(form.dataset.confirm)) {
    ev.preventDefault();
    ev.stopImmediatePropagation();
  }
}, true);
