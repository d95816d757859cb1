// The web terminal: xterm.js <-> a WebSocket bridged to a shell in the
// container. Binary frames carry terminal bytes; text frames carry control
// (resize from here, the end of the session from the server).
(function () {
  const el = document.getElementById("terminal");
  const state = document.getElementById("terminal-state");
  if (!el || !window.Terminal) return;
  const term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const show = (key, cls) => {
    state.textContent = state.dataset[key];
    state.className = "badge " + cls;
  };
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const again = document.getElementById("terminal-reconnect");
  const encoder = new TextEncoder();
  let ws = null;
  const send = (data) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(data); };
  // Each (re)connection is a new session on the server; after a drop the
  // Reconnect button opens the next one in the same terminal.
  const connect = () => {
    show("connecting", "");
    again.hidden = true;
    ws = new WebSocket(`${scheme}//${location.host}${el.dataset.ws}?cols=${term.cols}&rows=${term.rows}`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { show("open", "on"); term.focus(); };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const m = JSON.parse(e.data);
        if (m.type === "end" && m.message) term.write(`\r\n\x1b[33m[${m.message}]\x1b[0m\r\n`);
        return;
      }
      term.write(new Uint8Array(e.data));
    };
    ws.onclose = () => { show("closed", "off"); again.hidden = false; };
  };
  again.addEventListener("click", () => { term.write("\r\n"); connect(); });
  connect();
  term.onData((d) => send(encoder.encode(d)));
  term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => send(JSON.stringify({ type: "resize", cols, rows })));
  // Copy and paste with Ctrl+Shift+C / Ctrl+Shift+V (Ctrl+C stays ^C).
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === "KeyC" && term.hasSelection()) {
      navigator.clipboard.writeText(term.getSelection());
      return false;
    }
    if (e.code === "KeyV") {
      navigator.clipboard.readText().then((t) => term.paste(t));
      return false;
    }
    return true;
  });
  window.addEventListener("resize", () => fit.fit());
})();
