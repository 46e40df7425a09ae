// stylebox page: plain JS, no build step. Reads styles from GET /styles; a photo goes to
// POST /stylize, a clip to the /videos jobs, the camera over the WS /live WebSocket.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_UPLOAD = Number(document.body.dataset.maxUploadBytes) || 0;
const MAX_VIDEO = Number(document.body.dataset.maxVideoBytes) || 0;
const EXT = { png: "png", jpeg: "jpg", webp: "webp" };
const FRIENDLY = {  // a headline per problem status; the server's `detail` follows it
  400: "The upload was garbled.",
  404: "That style does not exist.",
  401: "This server needs a valid API key.",
  413: "The photo is too large.",
  415: "That file is not an image stylebox can read.",
  422: "The photo or a setting could not be used.",
  429: "stylebox is busy; try again in a moment.",
  503: "stylebox is not ready or is busy; try again in a moment.",
};

const state = {
  file: null,        // the chosen photo (a File)
  photoUrl: null,    // object URL of the photo, shown as "before"
  resultUrl: null,   // object URL of the last result
  weights: {},       // style name -> weight, 0..100
  titles: {},        // style name -> title
  controller: null,  // AbortController of the request in flight
  timer: 0,          // debounce timer
  seq: 0,            // request number: an older answer never replaces a newer one
  apiKey: sessionStorage.getItem("stylebox-api-key") || "",  // only if the server wants one
  stylesLoaded: false,
  mode: "photo",     // photo, video or live: which panels show, where controls go
};
const ERROR_IDS = { photo: "error", video: "video-error", live: "live-error" };

// The key as a header value. A header carries bytes, and fetch() and XHR take a header as
// a string of code points 0-255, one per byte: so the key's UTF-8 bytes, one character each,
// which is what the server compares (service/http/auth.py hashes the raw bytes). Passed as it
// is, a key with a character past Latin-1 ("€") makes fetch() throw, and one within it ("é")
// goes as one Latin-1 byte that matches nothing.
function keyHeader(key) {
  return String.fromCharCode(...new TextEncoder().encode(key));
}

// Why a key cannot be sent in a header at all ("" when it can): no header holds these.
function keyProblem(key) {
  return /[\0\r\n]/.test(key)
    ? "An API key cannot contain line breaks or NUL characters: check what was pasted."
    : "";
}

// fetch() with the API key, when the user gave one (see the key form).
function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.apiKey) headers.set("X-API-Key", keyHeader(state.apiKey));
  return fetch(url, { ...options, headers });
}

function askForKey(message) {
  $("key-form").hidden = false;
  showError(message);
  $("api-key").focus();
}

function megabytes(n) {
  return (n / (1024 * 1024)).toFixed(n < 10 * 1024 * 1024 ? 1 : 0) + " MB";
}

function showError(message, mode = state.mode) {
  const el = $(ERROR_IDS[mode]);
  el.textContent = message;
  el.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

function styleSpec() {
  const parts = Object.entries(state.weights).filter(([, w]) => w > 0);
  if (parts.length === 1) return parts[0][0];
  return parts.map(([n, w]) => `${n}:${w / 100}`).join(",");
}

function describeMix() {
  const parts = Object.entries(state.weights).filter(([, w]) => w > 0);
  const total = parts.reduce((s, [, w]) => s + w, 0);
  if (parts.length === 1) return state.titles[parts[0][0]];
  return parts.map(([n, w]) => `${state.titles[n]} ${Math.round((100 * w) / total)}%`)
    .join(" + ");
}

// -- styles -----------------------------------------------------------------------------

function renderWeights() {
  for (const li of $("styles").children) {
    const name = li.dataset.name;
    const w = state.weights[name];
    li.classList.toggle("on", w > 0);
    li.querySelector(".pick").setAttribute("aria-pressed", String(w > 0));
    li.querySelector("input").value = String(w);
    li.querySelector("output").textContent = `${w}`;
  }
}

function addStyle(style) {
  const li = document.createElement("li");
  li.className = "style";
  li.dataset.name = style.name;
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "pick";
  pick.title = style.source || style.title;
  const img = document.createElement("img");
  loadPreview(img, style.name);
  img.alt = "";  // the title below names it; the preview is decoration for screen readers
  img.width = 128;
  img.height = 128;
  img.loading = "lazy";
  const title = document.createElement("span");
  title.textContent = style.title;
  pick.append(img, title);
  pick.addEventListener("click", () => {  // use this style alone
    for (const n of Object.keys(state.weights)) state.weights[n] = n === style.name ? 100 : 0;
    renderWeights();
    schedule(0);
  });
  const weight = document.createElement("label");
  weight.className = "weight";
  const id = `weight-${style.name}`;
  weight.htmlFor = id;
  weight.textContent = "Weight";
  const out = document.createElement("output");
  out.htmlFor = id;
  const range = document.createElement("input");
  Object.assign(range, { type: "range", id, min: 0, max: 100, step: 5, value: 0 });
  range.setAttribute("aria-label", `${style.title} weight`);
  range.addEventListener("input", () => {
    state.weights[style.name] = Number(range.value);
    renderWeights();
    schedule();
  });
  weight.append(out, range);
  li.append(pick, weight);
  $("styles").append(li);
  state.weights[style.name] = 0;
  state.titles[style.name] = style.title;
}

async function problemMessage(resp) {
  let detail = "";
  try {
    const body = await resp.json();
    detail = body.detail || body.title || "";
  } catch {
    detail = resp.statusText;
  }
  const head = FRIENDLY[resp.status] || `The server answered ${resp.status}.`;
  return detail ? `${head} ${detail}` : head;
}

// Through fetch (not <img src>) so that the API key goes along when one is needed.
async function loadPreview(img, name) {
  try {
    const resp = await api(`/styles/${encodeURIComponent(name)}/preview.png`);
    if (resp.ok) img.src = URL.createObjectURL(await resp.blob());
  } catch {
    // A missing preview leaves the grey placeholder; the style still works.
  }
}

async function loadStyles() {
  try {
    const [stylesResp, modelResp] = await Promise.all([api("/styles"), api("/model")]);
    if (stylesResp.status === 401) {
      $("model-info").textContent = "Locked: enter the API key.";
      askForKey(await problemMessage(stylesResp));
      return;
    }
    if (!stylesResp.ok) throw new Error(await problemMessage(stylesResp));
    const { styles } = await stylesResp.json();
    state.stylesLoaded = true;
    showError("");
    styles.forEach(addStyle);
    if (styles.length) state.weights[styles[0].name] = 100;  // a sensible first pick
    renderWeights();
    if (modelResp.ok) {
      const card = await modelResp.json();
      $("model-info").textContent =
        `Model ${card.name} ${card.version}: ${styles.length} styles, width \u03b1 = ${card.alpha}`;
    }
  } catch (e) {
    $("model-info").textContent = "The model is not available.";
    showError(`Could not load the styles. ${e.message}`);
  }
}

// -- the photo ----------------------------------------------------------------------------

function setPhoto(file) {
  if (!file) return;
  showError("");
  if (MAX_UPLOAD && file.size > MAX_UPLOAD) {
    showError(`The photo is too large: ${file.name} is ${megabytes(file.size)}; ` +
      `the limit is ${megabytes(MAX_UPLOAD)}.`);
    return;
  }
  state.file = file;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  $("before").src = state.photoUrl;
  $("file-name").textContent = file.name;
  $("compare").classList.remove("empty");
  $("compare").classList.add("no-result");
  setResult(null);
  schedule(0);
}

function clearPhoto() {
  state.file = null;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = null;
  $("before").removeAttribute("src");
  $("file-name").textContent = "";
  $("file").value = "";
  $("compare").classList.add("empty");
}

// -- stylizing ----------------------------------------------------------------------------

function setResult(blob, spec) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = blob ? URL.createObjectURL(blob) : null;
  const after = $("after");
  const dl = $("download");
  if (!blob) {
    after.removeAttribute("src");
    delete after.dataset.spec;
    dl.hidden = true;
    return;
  }
  after.src = state.resultUrl;
  after.dataset.spec = spec;
  const fmt = $("format").value;
  const base = (state.file.name.replace(/\.[^.]*$/, "") || "photo").slice(0, 60);
  dl.href = state.resultUrl;
  dl.download = `${base}-${spec.replace(/[^a-z0-9_-]+/gi, "_")}.${EXT[fmt]}`;
  dl.hidden = false;
  $("compare").classList.remove("no-result");
}

function schedule(delay = 300) {
  if (state.mode === "live") {  // the session takes the new settings with its next frame
    sendLiveControl();
    return;
  }
  if (state.mode !== "photo") return;  // a clip uses the settings when it is started
  clearTimeout(state.timer);
  state.timer = setTimeout(stylize, delay);
}

async function stylize() {
  if (!state.file) return;
  const spec = styleSpec();
  if (!spec) {
    setStatus("Give at least one style a weight above 0.");
    return;
  }
  if (state.controller) state.controller.abort();
  const controller = (state.controller = new AbortController());
  const seq = ++state.seq;
  const params = new URLSearchParams({
    style: spec,
    strength: String(Number($("strength").value) / 100),
    preserve_color: String($("preserve-color").checked),
    format: $("format").value,
  });
  if ($("max-side").value) params.set("max_side", $("max-side").value);
  const body = new FormData();
  body.append("image", state.file, state.file.name);
  const compare = $("compare");
  compare.classList.add("busy");
  setStatus(`Stylizing with ${describeMix()}\u2026`);
  try {
    const resp = await api(`/stylize?${params}`, { method: "POST", body,
                                                   signal: controller.signal });
    if (seq !== state.seq) return;
    if (resp.status === 401) {
      askForKey(await problemMessage(resp));
      setStatus("No result.");
      return;
    }
    if (!resp.ok) {
      showError(await problemMessage(resp));
      setStatus("No result.");
      setResult(null);
      compare.classList.add("no-result");
      if (resp.status === 413 || resp.status === 415) clearPhoto();  // the file is unusable
      return;
    }
    const blob = await resp.blob();
    if (seq !== state.seq) return;
    showError("");
    setResult(blob, resp.headers.get("X-Stylebox-Style") || spec);
    const ms = Number(resp.headers.get("X-Stylebox-Inference-Ms") || 0);
    const strength = $("strength").value;
    setStatus(`${describeMix()}, strength ${strength}%` +
      ($("preserve-color").checked ? ", photo colours" : "") +
      ` \u2014 done (${Math.round(ms)} ms in the model).`);
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(`Could not reach stylebox: ${e.message}`);
    setStatus("No result.");
  } finally {
    if (seq === state.seq) compare.classList.remove("busy");
  }
}

// -- modes --------------------------------------------------------------------------------

function setMode(mode) {
  if (state.mode === "live" && mode !== "live") stopLive("Stopped.");
  state.mode = mode;
  document.body.dataset.mode = mode;
  for (const el of document.querySelectorAll("[data-modes]")) {
    el.hidden = !el.dataset.modes.split(" ").includes(mode);
  }
}

function seconds(s) {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// -- video: upload (XHR, for its progress), then poll the job -----------------------------

const VIDEO_FRIENDLY = {
  413: "The clip is too large.",
  415: "That file is not a video stylebox can read.",
  422: "The clip or a setting could not be used.",
  503: "stylebox is busy (its video queue is full) or not ready; try again in a moment.",
};
// job: the job being followed; kept: the id of the page's last job, which stays on the server
// (its result, or its cancelled status) until the next clip replaces it (forgetJob).
const clip = { file: null, xhr: null, job: null, kept: null, timer: 0, resultUrl: null, spec: "" };

function videoMessage(status, body) {
  const detail = (body && (body.detail || body.title)) || "";
  const head = status === 401 ? FRIENDLY[401]
    : VIDEO_FRIENDLY[status] || FRIENDLY[status] || `The server answered ${status}.`;
  return detail ? `${head} ${detail}` : head;
}

function setClip(file) {
  if (!file) return;
  showError("", "video");
  if (MAX_VIDEO && file.size > MAX_VIDEO) {
    showError(`The clip is too large: ${file.name} is ${megabytes(file.size)}; ` +
      `the limit is ${megabytes(MAX_VIDEO)}.`, "video");
    return;
  }
  clip.file = file;
  $("video-name").textContent = file.name;
  $("video-start").disabled = false;
  $("video-status").textContent = "Ready: press \u201cStylize the clip\u201d.";
}

function clearVideoResult() {
  clearTimeout(clip.timer);
  if (clip.resultUrl) URL.revokeObjectURL(clip.resultUrl);
  clip.resultUrl = null;
  const out = $("video-out");
  out.removeAttribute("src");
  out.load();
  out.hidden = true;
  $("video-download").hidden = true;
  $("video-upload-bar").value = 0;
  $("video-job-bar").value = 0;
  $("video-upload-text").textContent = "";
  $("video-job-text").textContent = "";
}

function videoBusy(busy) {
  $("video-cancel").hidden = !busy;
  $("video-start").disabled = busy || !clip.file;
}

// DELETE /videos/{id} of the page's last job once nothing shows it any more: its result
// would otherwise hold the server's disk until it expires. Best effort.
function forgetJob() {
  const id = clip.kept;
  clip.kept = null;
  if (id) api(`/videos/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => {});
}

function startVideo() {
  if (!clip.file) return;
  const spec = styleSpec();
  if (!spec) {
    $("video-status").textContent = "Give at least one style a weight above 0.";
    return;
  }
  clearVideoResult();
  forgetJob();
  showError("", "video");
  clip.spec = spec;
  clip.job = null;
  const params = new URLSearchParams({
    style: spec,
    strength: String(Number($("strength").value) / 100),
    preserve_color: String($("preserve-color").checked),
  });
  if ($("video-side").value) params.set("max_side", $("video-side").value);
  const xhr = (clip.xhr = new XMLHttpRequest());
  xhr.open("POST", `/videos?${params}`);
  if (state.apiKey) xhr.setRequestHeader("X-API-Key", keyHeader(state.apiKey));
  xhr.setRequestHeader("Content-Type", clip.file.type || "application/octet-stream");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    $("video-upload-bar").value = e.loaded / e.total;
    $("video-upload-text").textContent = `${megabytes(e.loaded)} of ${megabytes(e.total)}`;
  });
  xhr.addEventListener("load", () => {
    clip.xhr = null;
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: the status alone says what happened
    }
    if (xhr.status !== 202 || !body) {
      videoBusy(false);
      $("video-status").textContent = "No result.";
      if (xhr.status === 401) askForKey(videoMessage(401, body));
      else showError(videoMessage(xhr.status, body), "video");
      return;
    }
    $("video-upload-bar").value = 1;
    $("video-upload-text").textContent = "done";
    showJob(body);
  });
  xhr.addEventListener("error", () => {
    clip.xhr = null;
    videoBusy(false);
    showError("Could not reach stylebox: the upload failed.", "video");
    $("video-status").textContent = "No result.";
  });
  xhr.send(clip.file);
  $("video-progress").hidden = false;
  videoBusy(true);
  $("video-status").textContent = `Uploading ${clip.file.name}\u2026`;
}

function showJob(job) {
  clip.job = job;
  clip.kept = job.id;
  const bar = $("video-job-bar");
  bar.value = job.progress || 0;
  bar.dataset.state = job.state;
  let text = `${job.frames_done} / ${job.frames_total} frames`;
  if (job.fps) text += `, ${job.fps.toFixed(1)} frames a second`;
  if (job.state === "running" && job.eta_s != null) text += `, about ${seconds(job.eta_s)} left`;
  $("video-job-text").textContent = text;
  const status = $("video-status");
  if (job.state === "queued") status.textContent = "Waiting for the server\u2026";
  else if (job.state === "running") status.textContent = `Stylizing with ${describeMix()}\u2026`;
  if (job.state === "done") {
    videoBusy(false);
    status.textContent = `Done: ${job.width} \u00d7 ${job.height}` +
      (job.duration_s ? `, ${job.duration_s.toFixed(1)} s` : "") + ".";
    showVideoResult(job);
  } else if (job.state === "failed") {
    videoBusy(false);
    status.textContent = "No result.";
    showError(videoMessage(job.error ? job.error.status : 0, job.error), "video");
  } else if (job.state === "cancelled") {
    videoBusy(false);
    status.textContent = "Cancelled.";
  } else {
    clip.timer = setTimeout(() => pollJob(job.id), 500);
  }
}

async function pollJob(id) {
  if (!clip.job || clip.job.id !== id) return;  // cancelled or replaced meanwhile
  try {
    const resp = await api(`/videos/${encodeURIComponent(id)}`);
    if (!clip.job || clip.job.id !== id) return;
    if (!resp.ok) {
      videoBusy(false);
      showError(await problemMessage(resp), "video");
      $("video-status").textContent = "No result.";
      return;
    }
    showJob(await resp.json());
  } catch (e) {
    clip.timer = setTimeout(() => pollJob(id), 2000);  // a blip: keep asking
  }
}

async function showVideoResult(job) {
  let url = job.result;
  if (state.apiKey) {  // <video src> cannot send the key: fetch the file, play the blob
    const resp = await api(job.result);
    if (!resp.ok) {
      showError(await problemMessage(resp), "video");
      return;
    }
    url = clip.resultUrl = URL.createObjectURL(await resp.blob());
  }
  const out = $("video-out");
  out.src = url;
  out.hidden = false;
  const dl = $("video-download");
  const base = (clip.file.name.replace(/\.[^.]*$/, "") || "clip").slice(0, 60);
  dl.href = url;
  dl.download = `${base}-${clip.spec.replace(/[^a-z0-9_-]+/gi, "_")}.mp4`;
  dl.hidden = false;
}

// POST /videos/{id}/cancel: the job stops and reads "cancelled"; one that had just ended
// answers as it is, so a result (or a failure) that arrived meanwhile is shown.
async function cancelVideo() {
  clearTimeout(clip.timer);
  let ended = null;
  if (clip.xhr) {  // still uploading: no job yet
    clip.xhr.abort();
    clip.xhr = null;
  } else if (clip.job) {
    const id = clip.job.id;
    clip.job = null;  // a poll still under way drops its answer
    try {
      const resp = await api(`/videos/${encodeURIComponent(id)}/cancel`, { method: "POST" });
      if (resp.ok) ended = await resp.json();
    } catch {
      // unreachable: the job ends and expires on the server anyway
    }
  }
  clip.job = null;
  if (ended && (ended.state === "done" || ended.state === "failed")) {
    showJob(ended);
    return;
  }
  videoBusy(false);
  $("video-status").textContent = "Cancelled.";
}

// -- live: camera -> canvas -> JPEG -> WS /live -> stylized JPEG -> canvas ----------------

// Working sizes, largest first; a camera smaller than one keeps its own size.
const LIVE_SIZES = [[640, 480], [480, 360], [320, 240]];
const FPS_FLOOR = 10;       // below this many stylized frames a second, step down (automatic)
const FPS_WINDOW_MS = 2000; // the frames a second are counted over this window
const SETTLE_MS = 4000;     // time at a size before judging it (the first frames are slower)
// One frame sent and not yet answered: the next goes the moment the last comes back. A second
// one would arrive while the first is being stylized, and the server drops those.
const IN_FLIGHT = 1;
const live = {
  ws: null, stream: null, timer: 0, sizeIndex: 0, sent: 0, resolved: 0, frameErrors: 0,
  sentAt: new Map(), arrivals: [], latency: null, server: null, since: 0, encoding: false,
  next: null, opened: false, stopping: false, shown: 0,
};

function liveProtocols() {
  const protocols = ["stylebox.v1"];
  if (state.apiKey) {  // a browser cannot set headers on a WebSocket: the key rides here
    const b64 = btoa(keyHeader(state.apiKey));  // base64 of the key's UTF-8 bytes
    protocols.push(`stylebox.key.${b64.replace(/\+/g, "-").replace(/\//g, "_")
      .replace(/=+$/, "")}`);
  }
  return protocols;
}

function liveControl() {
  return {
    style: styleSpec(),
    strength: Number($("strength").value) / 100,
    preserve_color: $("preserve-color").checked,
  };
}

function sendLiveControl() {
  if (!live.ws || live.ws.readyState !== WebSocket.OPEN) return;
  if (!styleSpec()) {
    $("live-status").textContent = "Give at least one style a weight above 0.";
    return;
  }
  live.ws.send(JSON.stringify(liveControl()));
}

function liveSize(index = live.sizeIndex) {
  const cam = $("live-cam");
  const [tw, th] = LIVE_SIZES[index];
  const vw = cam.videoWidth || tw;
  const vh = cam.videoHeight || th;
  const scale = Math.min(1, tw / vw, th / vh);  // never upscale the camera
  return [Math.max(16, Math.round(vw * scale)), Math.max(16, Math.round(vh * scale))];
}

async function startLive() {
  if (live.ws) return;
  showError("", "live");
  $("live-notice").hidden = true;
  if (!styleSpec()) {
    $("live-status").textContent = "Give at least one style a weight above 0.";
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser gives no camera to this page: open stylebox on localhost " +
      "or over https (browsers allow cameras on secure pages only).", "live");
    return;
  }
  $("live-start").disabled = true;
  $("live-status").textContent = "Asking for the camera\u2026";
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    $("live-start").disabled = false;
    $("live-status").textContent = "No camera.";
    showError(`The camera could not be opened: ${e.message || e.name}.`, "live");
    return;
  }
  const cam = $("live-cam");
  cam.srcObject = live.stream;
  await cam.play().catch(() => {});
  const choice = $("live-size").value;
  Object.assign(live, { sizeIndex: choice === "auto" ? 0 : Number(choice), sent: 0,
    resolved: 0, frameErrors: 0, sentAt: new Map(), arrivals: [], latency: null,
    server: null, since: performance.now(), encoding: false, next: null, opened: false,
    stopping: false, shown: 0 });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = (live.ws = new WebSocket(`${scheme}://${location.host}/live`, liveProtocols()));
  ws.binaryType = "blob";
  ws.addEventListener("open", () => {
    live.opened = true;
    sendLiveControl();
    $("live-status").textContent = `Live with ${describeMix()}.`;
    $("live-start").textContent = "Stop the camera";
    $("live-start").disabled = false;
    live.timer = setInterval(liveTick, 10);
  });
  ws.addEventListener("message", (e) => {
    if (typeof e.data === "string") liveMessage(JSON.parse(e.data));
    else liveFrame(e.data);
  });
  ws.addEventListener("close", (e) => {
    if (live.stopping || live.ws !== ws) return;
    let why = `The live connection closed (${e.code}${e.reason ? `: ${e.reason}` : ""}).`;
    if (!live.opened) {
      // A refused handshake shows the page no status: name the usual causes.
      why = "The server refused the live connection: it has as many live sessions as it " +
        "allows, live sessions are off, or the API key is missing or wrong.";
    } else if (e.code === 4408) {
      why = "The live session was closed after a while without frames.";
    } else if (e.code === 1012 || e.code === 1001) {
      why = "The server is restarting or shutting down; start the camera again in a moment.";
    }
    stopLive("Stopped.");
    showError(why, "live");
  });
}

function stopLive(message) {
  clearInterval(live.timer);
  live.stopping = true;
  if (live.ws) live.ws.close(1000, "stopped");
  live.ws = null;
  if (live.stream) for (const track of live.stream.getTracks()) track.stop();
  live.stream = null;
  $("live-cam").srcObject = null;
  $("live-start").textContent = "Start the camera";
  $("live-start").disabled = false;
  if (message) $("live-status").textContent = message;
}

function liveTick() {
  const ws = live.ws;
  const cam = $("live-cam");
  if (!ws || ws.readyState !== WebSocket.OPEN || live.encoding || ws.bufferedAmount > 0) return;
  if (cam.readyState < 2 || live.sent - live.resolved >= IN_FLIGHT) return;
  const [w, h] = liveSize();
  const work = live.work || (live.work = document.createElement("canvas"));
  work.width = w;
  work.height = h;
  work.getContext("2d").drawImage(cam, 0, 0, w, h);
  live.encoding = true;
  work.toBlob((blob) => {
    live.encoding = false;
    if (!blob || live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    live.sent += 1;
    live.sentAt.set(live.sent, performance.now());
    ws.send(blob);
  }, "image/jpeg", 0.8);
}

function liveMessage(msg) {
  if (msg.type === "frame") {
    live.next = msg;  // its JPEG is the next binary message
    live.resolved = msg.stylized + msg.dropped + live.frameErrors;
    $("live-dropped").textContent = String(msg.dropped);
  } else if (msg.type === "error") {
    const p = msg.problem || {};
    if (msg.seq) {
      live.frameErrors += 1;
      live.resolved += 1;
      live.sentAt.delete(msg.seq);
    }
    showError(`${FRIENDLY[p.status] || "The server refused that."} ${p.detail || ""}`, "live");
  } else if (msg.type === "control") {
    showError("", "live");
    $("live-status").textContent = `Live with ${describeMix()}, strength ` +
      `${Math.round(msg.strength * 100)}%` + (msg.preserve_color ? ", photo colours." : ".");
  }
}

async function liveFrame(blob) {
  const stats = live.next;
  live.next = null;
  if (!stats) return;
  const now = performance.now();
  const sentAt = live.sentAt.get(stats.seq);
  for (const seq of live.sentAt.keys()) if (seq <= stats.seq) live.sentAt.delete(seq);
  if (sentAt !== undefined) {  // both smoothed alike, so the server's share never exceeds all
    const ms = now - sentAt;
    live.latency = live.latency === null ? ms : 0.8 * live.latency + 0.2 * ms;
    live.server = live.server === null ? stats.server_ms
      : 0.8 * live.server + 0.2 * stats.server_ms;
  }
  live.arrivals.push(now);
  while (live.arrivals.length && live.arrivals[0] < now - FPS_WINDOW_MS) live.arrivals.shift();
  const bitmap = await createImageBitmap(blob);
  const out = $("live-out");
  if (out.width !== bitmap.width || out.height !== bitmap.height) {
    out.width = bitmap.width;
    out.height = bitmap.height;
  }
  out.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  live.shown += 1;
  out.dataset.frames = String(live.shown);
  const span = Math.min(FPS_WINDOW_MS, now - live.since);
  const fps = span > 500 ? (1000 * live.arrivals.length) / span : null;
  $("live-fps").textContent = fps === null ? "\u2013" : fps.toFixed(1);
  $("live-latency").textContent = live.latency === null ? "\u2013"
    : `${Math.round(live.latency)} ms (${Math.round(live.server)} ms in the server)`;
  $("live-shown-size").textContent = `${stats.width} \u00d7 ${stats.height}`;
  adaptLive(fps, now, stats);
}

// Automatic working size: when the server cannot keep up at this size, the next one down.
function adaptLive(fps, now, stats) {
  if ($("live-size").value !== "auto" || fps === null) return;
  if (now - live.since < SETTLE_MS || fps >= FPS_FLOOR) return;
  // The next size that is really smaller (a small camera makes the larger ones equal).
  let next = live.sizeIndex + 1;
  while (next < LIVE_SIZES.length && liveSize(next)[0] >= stats.width) next += 1;
  if (next >= LIVE_SIZES.length) return;
  live.sizeIndex = next;
  live.since = now;
  live.arrivals = [];
  const [w, h] = liveSize();
  const notice = $("live-notice");
  notice.textContent = `The server could not keep up at ${stats.width} \u00d7 ` +
    `${stats.height} (${fps.toFixed(1)} frames a second, below ${FPS_FLOOR}): ` +
    `now ${w} \u00d7 ${h}.`;
  notice.hidden = false;
}

// -- wiring -------------------------------------------------------------------------------

function init() {
  if (MAX_UPLOAD) $("max-upload").textContent = megabytes(MAX_UPLOAD);
  if (MAX_VIDEO) $("max-video").textContent = megabytes(MAX_VIDEO);
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => setMode(radio.value));
  }
  $("video-file").addEventListener("change", (e) => setClip(e.target.files[0]));
  $("video-start").addEventListener("click", startVideo);
  $("video-cancel").addEventListener("click", cancelVideo);
  $("live-start").addEventListener("click", () => (live.ws ? stopLive("Stopped.") : startLive()));
  $("live-size").addEventListener("change", () => {
    const choice = $("live-size").value;
    live.sizeIndex = choice === "auto" ? 0 : Number(choice);
    live.since = performance.now();
    live.arrivals = [];
    $("live-notice").hidden = true;
  });
  $("file").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    const why = keyProblem(key);
    if (why) {
      showError(why);
      $("api-key").focus();
      return;
    }
    state.apiKey = key;
    sessionStorage.setItem("stylebox-api-key", state.apiKey);
    $("key-form").hidden = true;
    showError("");
    if (!state.stylesLoaded) loadStyles();
    schedule(0);
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    setPhoto(e.dataTransfer.files[0]);
  });
  // Dropping a file anywhere else must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  $("strength").addEventListener("input", () => {
    $("strength-value").textContent = `${$("strength").value}%`;
    schedule();
  });
  for (const id of ["preserve-color", "max-side", "format"]) {
    $(id).addEventListener("change", () => schedule(0));
  }
  $("split").addEventListener("input", () => {
    $("compare").style.setProperty("--pos", `${$("split").value}%`);
  });
  for (const radio of document.querySelectorAll("input[name=view]")) {
    radio.addEventListener("change", () => { $("compare").dataset.view = radio.value; });
  }
  loadStyles();
}

init();
