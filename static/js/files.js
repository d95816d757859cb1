// The web file browser: uploads with progress (a browser API: XHR upload
// events), a new folder, deletion after confirmation. Changes go to the
// JSON API; the listing is the server's htmx fragment (#files-browser),
// fetched again after each change.
(function () {
  const root = () => document.getElementById("files-browser");
  const progressList = () => document.getElementById("files-progress");

  const refresh = () => {
    const r = root();
    if (!r || !window.htmx) return;
    htmx.ajax("GET", r.dataset.base + "?path=" + encodeURIComponent(r.dataset.path), {
      target: "#files-browser",
      swap: "outerHTML",
    });
  };

  const message = (text) => {
    const m = document.getElementById("files-message");
    if (!m) return;
    m.textContent = text || "";
    m.hidden = !text;
  };

  // The API's error as one line: its message and its fields' reasons.
  const errorText = (status, text) => {
    try {
      const e = JSON.parse(text).error;
      const fields = e.fields ? Object.values(e.fields).join("; ") : "";
      return fields ? e.message + ": " + fields : e.message;
    } catch (_) {
      return String(status);
    }
  };

  const post = async (op, body) => {
    const r = root();
    const resp = await fetch(r.dataset.api + "/" + op, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": r.dataset.csrf },
      body: JSON.stringify(body),
    });
    if (resp.ok) return true;
    message(errorText(resp.status, await resp.text()));
    return false;
  };

  document.addEventListener("click", async (ev) => {
    const del = ev.target.closest(".files-delete");
    if (!del) return;
    const r = root();
    const path = del.dataset.path;
    if (!window.confirm(r.dataset.tConfirmDelete.replace("{path}", path))) return;
    if (await post("delete", { path: path, recursive: del.dataset.dir === "true" })) refresh();
  });

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.files-mkdir");
    if (!form) return;
    ev.preventDefault();
    const r = root();
    if (await post("mkdir", { path: r.dataset.path, name: form.elements.name.value })) refresh();
  });

  // One file: a line with its progress; resolves true when uploaded.
  const upload = (file, overwrite) =>
    new Promise((resolve) => {
      const r = root();
      const dir = r.dataset.path === "/" ? "" : r.dataset.path;
      const li = document.createElement("li");
      const label = document.createElement("span");
      const bar = document.createElement("progress");
      const pct = document.createElement("span");
      label.textContent = file.name + " ";
      bar.max = file.size || 1;
      bar.value = 0;
      pct.className = "files-pct";
      pct.textContent = " 0%";
      li.append(label, bar, pct);
      const list = progressList();
      if (list) list.append(li);
      const fail = (why) => {
        li.className = "error";
        pct.textContent = " " + r.dataset.tFailed + ": " + why;
        resolve(false);
      };
      if (file.size > Number(r.dataset.max)) return fail(r.dataset.tTooLarge);
      const xhr = new XMLHttpRequest();
      let url = r.dataset.api + "/upload?path=" + encodeURIComponent(dir + "/" + file.name);
      if (overwrite) url += "&overwrite=true";
      xhr.open("PUT", url);
      xhr.setRequestHeader("X-CSRF-Token", r.dataset.csrf);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        bar.max = e.total || 1;
        bar.value = e.loaded;
        pct.textContent = " " + Math.floor((100 * e.loaded) / (e.total || 1)) + "%";
      };
      xhr.onload = async () => {
        if (xhr.status === 201) {
          bar.value = bar.max;
          li.className = "done";
          pct.textContent = " 100% " + r.dataset.tDone;
          return resolve(true);
        }
        const exists = xhr.status === 409 && xhr.responseText.indexOf("exists") >= 0;
        if (exists && !overwrite && window.confirm(r.dataset.tConfirmOverwrite.replace("{name}", file.name))) {
          li.remove();
          return resolve(await upload(file, true));
        }
        fail(errorText(xhr.status, xhr.responseText));
      };
      xhr.onerror = () => fail("network");
      xhr.send(file);
    });

  const uploadAll = async (files) => {
    message("");
    for (const f of files) await upload(f, false);
    refresh();
  };

  document.addEventListener("change", (ev) => {
    if (ev.target.id !== "files-input") return;
    const files = Array.from(ev.target.files || []);
    if (files.length) uploadAll(files);
  });

  document.addEventListener("dragover", (ev) => {
    const drop = ev.target.closest && ev.target.closest("#files-drop");
    if (!drop) return;
    ev.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (ev) => {
    const drop = ev.target.closest && ev.target.closest("#files-drop");
    if (drop) drop.classList.remove("over");
  });
  document.addEventListener("drop", (ev) => {
    const drop = ev.target.closest && ev.target.closest("#files-drop");
    if (!drop) return;
    ev.preventDefault();
    drop.classList.remove("over");
    const files = Array.from((ev.dataTransfer && ev.dataTransfer.files) || []);
    if (files.length) uploadAll(files);
  });
})();
