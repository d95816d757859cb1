// The node form: TLS applies to tcp:// endpoints only. For a unix://
// endpoint its fields are hidden and "Use TLS" is unchecked; typing a
// tcp:// endpoint checks it again unless the user chose otherwise.
(function () {
  const ep = document.getElementById("node-endpoint");
  const tls = document.getElementById("node-tls");
  if (!ep || !tls) return;
  let chosen = false;
  tls.addEventListener("change", () => { chosen = true; });
  const sync = (typed) => {
    const v = ep.value.trim();
    const unix = v.startsWith("unix://");
    document.querySelectorAll(".tls-field").forEach((f) => { f.hidden = unix; });
    if (unix) tls.checked = false;
    else if (typed && !chosen && v.startsWith("tcp://")) tls.checked = true;
  };
  ep.addEventListener("input", () => sync(true));
  sync(false);
})();
