// Replays a session recording (asciicast v2) with the vendored asciinema player.
(function () {
  const el = document.getElementById("player");
  if (!el || !window.AsciinemaPlayer) return;
  window.AsciinemaPlayer.create(el.dataset.src, el, { fit: "width", idleTimeLimit: 2 });
})();
