/* The demo lab's page: polls GET state (4x/s while programming), drives the endpoints. */
(function () {
  "use strict";
  var lab = document.getElementById("lab");
  if (!lab) { return; }
  var urls = lab.dataset;
  var $ = function (id) { return document.getElementById(id); };
  var deadline = Date.now() + parseFloat(urls.timeLeft) * 1000;
  var busy = false;          // a programming task is queued or running
  var pollTimer = null;
  var seen = [];             // every progress fraction shown (the browser test reads it)
  var expired = false;       // the clock reached 0 (ask the lab once)
  var submitting = false;    // a Program request is on its way: ignore the old task's state
  var currentId = null;      // the task the page follows (a late poll of an older one is old)
  var twin = urls.twin === "true";  // the board runs the program: the LED is its pin 13
  var REPLAY_MS = 1000;      // twin: pin edges are replayed this far behind the board
  var edgeAfter = 0;         // twin: simulated time of the last edge scheduled
  var toggles = 0;           // twin: level changes shown

  function post(url, body) {
    var options = {method: "POST", credentials: "same-origin"};
    if (body instanceof FormData) { options.body = body; }
    else if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers = {"Content-Type": "application/json"};
    }
    return fetch(url, options).then(function (r) {
      if (r.redirected) { window.location.href = r.url; return new Promise(function () {}); }
      return r.json().catch(function () { return {error: "the lab answered HTTP " + r.status}; })
        .then(function (d) { d._ok = r.ok; return d; });
    });
  }

  function show(id, text, kind) {  // kind: true (an error), "warn" or nothing
    var el = $(id);
    el.hidden = !text;
    el.textContent = text || "";
    el.classList.toggle("error", kind === true);
    el.classList.toggle("warn", kind === "warn");
  }

  // -- time left -----------------------------------------------------------------------------
  function tick() {
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    var m = Math.floor(left / 60), s = left % 60;
    $("time-left").textContent = m + ":" + (s < 10 ? "0" : "") + s;
    $("time-left").parentNode.classList.toggle("low", left < 60);
    if (left === 0 && !expired) { expired = true; poll(); }
  }

  // -- programming ---------------------------------------------------------------------------
  function overall(task) {
    if (task.status === "done") { return 1; }
    var p = task.progress;
    if (!p || !p.total) { return 0; }
    var f = p.fraction !== undefined ? p.fraction : p.done / p.total;
    return p.stage === "verify" ? 0.5 + f / 2 : f / 2;
  }

  function describe(task) {
    var p = task.progress;
    if (task.status === "submitted") { return "Waiting for the board…"; }
    if (task.status === "running") {
      if (task.stopping) { return "Cancelling at the next page…"; }
      if (!p || !p.total) { return "Talking to the bootloader…"; }
      var verb = p.stage === "verify" ? "Verifying" : "Writing";
      return verb + " page " + p.done + " of " + p.total + " · " +
        Math.round(overall(task) * 100) + "%";
    }
    if (task.status === "done") { return "Done · 100%"; }
    return cancelled(task) ? "Cancelled" : "Failed";
  }

  function cancelled(task) {
    return !!task.error && (task.error["class"] === "OperationCancelled" || task.stopping);
  }

  function renderProgram(task) {
    if (!task || submitting || (currentId && task.id && task.id !== currentId)) { return; }
    var fraction = overall(task);
    var fill = $("progress-fill");
    fill.style.width = (fraction * 100).toFixed(1) + "%";
    fill.parentNode.setAttribute("aria-valuenow", Math.round(fraction * 100));
    fill.classList.toggle("done", task.status === "done");
    fill.classList.toggle("failed", task.status === "failed" && !cancelled(task));
    fill.classList.toggle("cancelled", task.status === "failed" && cancelled(task));
    if (seen[seen.length - 1] !== fraction) { seen.push(fraction); }
    fill.dataset.fraction = fraction;
    fill.dataset.seen = seen.join(",");
    $("progress-text").textContent = describe(task);
    busy = task.status === "submitted" || task.status === "running";
    $("program-button").disabled = busy;
    $("cancel-button").disabled = !busy || task.stopping;
    if (task.status === "done" && task.result) {
      var r = task.result;
      show("program-message", r.source + ": " + r.bytes + " bytes written" +
        (r.verified ? " and verified" : " (not verified)") + " in " +
        r.seconds.toFixed(2) + " s.", false);
    } else if (task.status === "failed" && cancelled(task)) {
      var p = task.progress;
      var where = p && p.total ? " during " + (p.stage === "verify" ? "verification" : "writing") +
        ", after page " + p.done + " of " + p.total : "";
      show("program-message", "Cancelled" + where + ". The board has left programming mode " +
        "and holds a partial image: program it again when you are ready.", "warn");
    } else if (task.status === "failed" && task.error) {
      show("program-message", "Failed: " + task.error.message, true);
    } else {
      show("program-message", "");
    }
  }

  $("program-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var source = document.querySelector("input[name=source]:checked").value;
    var form = new FormData();
    if (source === "upload") {
      var file = $("firmware-file").files[0];
      if (!file) { show("program-message", "Choose a .hex file first.", true); return; }
      form.append("firmware", file, file.name);
    } else {
      form.append("example", source);
    }
    seen = [];
    renderProgram({status: "submitted", progress: null});
    submitting = true;
    post(urls.program, form).then(function (d) {
      submitting = false;
      if (!d._ok) {
        busy = false;
        $("program-button").disabled = false;
        $("cancel-button").disabled = true;
        $("progress-text").textContent = "Nothing was programmed.";
        show("program-message", d.error, true);
        return;
      }
      currentId = d.task_id;
      poll();
    });
  });
  $("firmware-file").addEventListener("change", function () { $("source-upload").checked = true; });

  $("cancel-button").addEventListener("click", function () {
    $("cancel-button").disabled = true;
    post(urls.cancel).then(function (d) {
      if (!d._ok) { show("program-message", d.error, true); }
      poll();
    });
  });

  // -- LED -----------------------------------------------------------------------------------
  function showLevel(on) {
    var el = $("led");
    if (el.dataset.on === (on ? "true" : "false") && $("led-state").textContent !== "unknown") {
      return;
    }
    if ($("led-state").textContent !== "unknown") { toggles += 1; }
    el.classList.toggle("on", on);
    el.dataset.on = on ? "true" : "false";
    el.dataset.toggles = String(toggles);
    $("led-state").textContent = on ? "high (on)" : "low (off)";
    $("toggles").textContent = toggles;
  }

  function renderPin(led) {  // twin: {on, now, edges: [[sim seconds, level]...]}
    if (!led) { return; }
    if (edgeAfter === 0 && !led.edges.length) { showLevel(led.on); }
    led.edges.forEach(function (edge) {
      if (edge[0] <= edgeAfter) { return; }
      edgeAfter = edge[0];
      var delay = (edge[0] - led.now) * 1000 + REPLAY_MS;
      setTimeout(function () { showLevel(edge[1]); }, Math.max(0, delay));
    });
    if (!led.edges.length && led.now > edgeAfter + 2) {  // no change for a while: show the level
      setTimeout(function () { showLevel(led.on); }, REPLAY_MS);
    }
  }

  function renderLed(led) {
    if (twin) { renderPin(led); return; }
    if (!led) { return; }
    var on = led.on === true;
    $("led").classList.toggle("on", on);
    $("led").dataset.on = on ? "true" : "false";
    $("led-state").textContent = led.on === null ? "unknown" : (on ? "on" : "off");
    $("switches").textContent = led.switches;
  }

  function switchLed(on) {
    $("led-on").disabled = $("led-off").disabled = true;
    post(urls.led, {on: on}).then(function (d) {
      $("led-on").disabled = $("led-off").disabled = false;
      if (!d._ok) { show("led-message", d.error, true); return; }
      show("led-message", "");
      renderLed({on: d.led, switches: d.switches});
    });
  }
  if (!twin) {
    $("led-on").addEventListener("click", function () { switchLed(true); });
    $("led-off").addEventListener("click", function () { switchLed(false); });
  }

  // -- serial monitor (twin) -------------------------------------------------------------------
  document.addEventListener("weblab-monitor-end", function (event) {
    console.info("serial monitor ended: " + event.target.dataset.reason);
  });

  // -- logout --------------------------------------------------------------------------------
  $("leave-button").addEventListener("click", function () {
    $("leave-button").disabled = true;
    post(urls.leave).then(function (d) { window.location.href = d.next || d.back || "/"; });
  });

  // -- state polling -------------------------------------------------------------------------
  function poll() {
    clearTimeout(pollTimer);
    var query = [];
    if (currentId) { query.push("task=" + encodeURIComponent(currentId)); }
    if (twin) { query.push("after=" + edgeAfter); }
    var url = urls.state + (query.length ? "?" + query.join("&") : "");
    fetch(url, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d.active) { window.location.href = d.next || d.back || "/"; return; }
        deadline = Date.now() + d.time_left * 1000;
        renderProgram(d.program);
        renderLed(d.led);
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { pollTimer = setTimeout(poll, busy ? 250 : (twin ? 1000 : 2000)); });
  }

  tick();
  setInterval(tick, 250);
  poll();
})();
