// Follows an instance's logs: streams GET <pre data-src> into the <pre>,
// keeping the view at the bottom unless the reader scrolled up. A browser
// API (fetch streaming) is needed here; the rest of the UI is htmx.
(function () {
  const pre = document.getElementById("logs");
  if (!pre) return;
  const MAX = 200000; // characters kept on screen
  const atBottom = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
  // Terminal escape codes (colours, cursor moves, titles) are removed, not
  // shown raw; a code cut in two by the stream waits for its other half.
  const CODES = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\^_]/g;
  const PARTIAL = /\x1b(?:\[[0-?]*[ -\/]*|\][^\x07\x1b]*)?$/;
  let carry = "";
  const strip = (text) => {
    const all = (carry + text).replace(CODES, "");
    const cut = all.match(PARTIAL);
    carry = cut ? cut[0] : "";
    return cut ? all.slice(0, cut.index) : all;
  };
  const append = (raw) => {
    const text = strip(raw);
    const stick = atBottom();
    pre.textContent = (pre.textContent + text).slice(-MAX);
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  const note = (text) => {
    const span = document.createElement("span");
    span.className = "hint";
    span.textContent = "\n— " + text + " —\n";
    pre.appendChild(span);
  };
  fetch(pre.dataset.src, { credentials: "same-origin" })
    .then(async (resp) => {
      if (!resp.ok) {
        const body = await resp.json().catch(() => null);
        note((body && body.error && body.error.message) || resp.statusText);
        return;
      }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        append(decoder.decode(value, { stream: true }));
      }
      note(pre.dataset.ended);
    })
    .catch((e) => note(String(e)));
})();
