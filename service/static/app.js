// stylebox page: plain JS, no build step. Reads styles from GET /styles; a photo goes to
// POST /stylize, a clip to the /videos jobs, the camera over the WS /live WebSocket, and a
// painting to POST /styles (a trainer job, followed at GET /jobs/{id}) to become a new style;
// Best quality sends the photo to POST /optimize (a trainer job too, followed the same way).
// Where the server serves several models (GET /models), a Model select picks the one photos,
// clips and the camera use (?model=NAME on each request).
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
  mode: "photo",     // photo, video, live or add: which panels show, where controls go
  card: null,        // the model card (GET /model), once loaded
  models: [],        // the served models (GET /models); the select shows when there are 2+
  model: "default",  // the model chosen in the select
  liveModel: "default",  // what the live mode starts with (GET /models' `live`)
};
const ERROR_IDS = { photo: "error", video: "video-error", live: "live-error", add: "add-error" };

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
  updateBestControls();  // a blend turns Best quality off
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

// "?model=NAME" (or "&model=NAME") for the chosen model; "" where one model is served, so a
// single-model server gets the requests it always got.
function modelQuery(sep = "?") {
  return state.models.length > 1 ? `${sep}model=${encodeURIComponent(state.model)}` : "";
}

// The Model select from GET /models: name and time for a 640 x 480 frame; hidden unless the
// server serves more than one. A server without the route (or a locked one) keeps it hidden.
async function loadModels() {
  try {
    const resp = await api("/models");
    if (!resp.ok) return;
    const body = await resp.json();
    state.models = body.models;
    state.liveModel = body.live;
    if (!state.models.some((m) => m.name === state.model)) state.model = body.default;
  } catch {
    return;  // the styles' own request reports an unreachable server
  }
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    const ms = m.ms_640x480 == null ? "" : ` \u2014 ${Math.round(m.ms_640x480)} ms`;
    option.textContent = `${m.name}${ms}`;
    return option;
  }));
  select.value = state.model;
  $("model-pick").hidden = state.models.length < 2;
}

// Another model: its styles (the mix kept where the names still exist), then the photo again;
// a camera that runs starts again on it.
async function chooseModel(name) {
  if (name === state.model) return;
  state.model = name;
  $("model").value = name;
  await loadStyles();
  if (state.mode === "live" && live.ws) {
    stopLive("Stopped.");
    startLive();
  } else {
    schedule(0);
  }
}

// Through fetch (not <img src>) so that the API key goes along when one is needed.
async function loadPreview(img, name) {
  try {
    const resp = await api(`/styles/${encodeURIComponent(name)}/preview.png${modelQuery()}`);
    if (resp.ok) img.src = URL.createObjectURL(await resp.blob());
  } catch {
    // A missing preview leaves the grey placeholder; the style still works.
  }
}

// The style picker from GET /styles (and the model line from GET /model). Called again after
// a style edit: `want` ({name, present}) then says what the new model must show, and nothing
// changes (false) until both answers agree with it and with each other (a server swaps its
// model within seconds of the edit); `want.name` is then the style picked, if present.
async function loadStyles(want = null) {
  try {
    const [stylesResp, modelResp] = await Promise.all([api(`/styles${modelQuery()}`),
                                                       api(`/model${modelQuery()}`)]);
    if (stylesResp.status === 401) {
      $("model-info").textContent = "Locked: enter the API key.";
      askForKey(await problemMessage(stylesResp));
      return false;
    }
    if (!stylesResp.ok) throw new Error(await problemMessage(stylesResp));
    const { styles } = await stylesResp.json();
    const card = modelResp.ok ? await modelResp.json() : null;
    if (want) {
      const names = styles.map((s) => s.name);
      const same = card && card.styles.map((s) => s.name).join() === names.join();
      if (!same || names.includes(want.name) !== want.present) return false;
    }
    const before = state.stylesLoaded ? state.weights : {};
    state.stylesLoaded = true;
    if (!want) showError("");
    for (const img of $("styles").querySelectorAll("img")) {
      if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    }
    $("styles").replaceChildren();
    state.weights = {};
    state.titles = {};
    styles.forEach(addStyle);
    for (const s of styles) {  // a reload keeps the mix the user had, where it still can
      state.weights[s.name] = want && want.present ? 0 : before[s.name] || 0;
    }
    if (want && want.present) state.weights[want.name] = 100;
    if (styles.length && !styleSpec()) state.weights[styles[0].name] = 100;  // a first pick
    renderWeights();
    state.card = card;
    if (card) {
      $("model-info").textContent =
        `Model ${card.name} ${card.version}: ${styles.length} styles, width \u03b1 = ${card.alpha}` +
        (state.models.length > 1 ? ` (served as \u201c${state.model}\u201d)` : "");
    }
    renderAdded();
    return true;
  } catch (e) {
    if (want) return false;  // a blip while waiting for the new model: ask again
    $("model-info").textContent = "The model is not available.";
    showError(`Could not load the styles. ${e.message}`);
    return false;
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
  if (!best.busy) clearBest();  // a render under way goes on, captioned with its photo's name
  checkBest();
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
    updateBestControls();
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
  updateBestControls();
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
  if (state.models.length > 1) params.set("model", state.model);
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
  // The camera starts on the server's live model; a painting edits the default model.
  if (state.models.length > 1 && mode !== state.mode) {
    if (mode === "live") chooseModel(state.liveModel);
    else if (mode === "add") chooseModel("default");
  }
  state.mode = mode;
  document.body.dataset.mode = mode;
  for (const el of document.querySelectorAll("[data-modes]")) {
    el.hidden = !el.dataset.modes.split(" ").includes(mode);
  }
  if (mode === "add") checkTrainer();  // say now if no worker would train a painting
  else clearTimeout(paint.watch);
  if (mode === "photo") checkBest();  // is there a worker for Best quality?
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
  if (state.models.length > 1) params.set("model", state.model);
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
  const ws = (live.ws = new WebSocket(`${scheme}://${location.host}/live${modelQuery()}`,
                                      liveProtocols()));
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

// -- trainer jobs: POST /styles, DELETE /styles/{name} and POST /optimize each queue a job that
// a `stylebox worker` runs; the page follows it at GET /jobs/{id} ---------------------------

const JOB_ACTIVE = new Set(["queued", "running"]);

// One trainer job followed at a time (the add tab's style edits, Photo mode's best-quality
// render): GET /jobs/{id} every 500 ms while it is queued or running, each status to
// `show(job)` (the last one has ended: done, failed or cancelled), `lost(message)` when the job
// cannot be read any more. With `preview`, the job's GET /jobs/{id}/preview goes to
// `preview(url, job)` as a blob URL (the one it replaces is revoked), when `wantsPreview(job)`:
// through fetch, so the key goes along; the address never changes, and a cache-busting query
// would be refused (the service answers 422 to unknown query parameters). At most one fetch at
// a time, one every `previewMs` while the job runs; the last one (the job ended) is never
// skipped. `job`: the job while it is followed; `kept`: the page's last job, which stays on
// the server until forget() (the next job replaces it).
class JobFollower {
  constructor({ show, lost, preview = null, wantsPreview = () => true, previewMs = 2000 }) {
    Object.assign(this, { show, lost, onPreview: preview, wantsPreview, previewMs, job: null,
      kept: null, timer: 0, previewUrl: null, previewAt: 0, previewBusy: false,
      previewAgain: null });
  }

  // A status (POST's 202 answer, a poll's, a cancel's): shown, then followed while active.
  update(job) {
    clearTimeout(this.timer);
    const active = JOB_ACTIVE.has(job.state);
    this.job = active ? job : null;
    this.kept = job.id;
    if (this.onPreview && job.preview && this.wantsPreview(job)) {
      this.refreshPreview(job, !active);
    }
    this.show(job);
    if (active) this.timer = setTimeout(() => this.poll(job.id), 500);
  }

  following(id) {
    return this.job !== null && this.job.id === id;
  }

  async poll(id) {
    if (!this.following(id)) return;  // cancelled or replaced meanwhile
    try {
      const resp = await api(`/jobs/${encodeURIComponent(id)}`);
      if (!this.following(id)) return;
      if (!resp.ok) {
        this.job = null;
        this.lost(await problemMessage(resp));
        return;
      }
      const job = await resp.json();
      if (this.following(id)) this.update(job);
    } catch {
      if (this.following(id)) this.timer = setTimeout(() => this.poll(id), 2000);  // a blip
    }
  }

  // POST /jobs/{id}/cancel of the job followed: its status after (`cancelled`, or as it ended
  // if it had just ended), or null when the server could not be reached (the job goes on; its
  // status says so on the next visit). Polling stops first: a poll under way drops its answer.
  async cancel() {
    clearTimeout(this.timer);
    const job = this.job;
    this.job = null;
    if (!job) return null;
    try {
      const resp = await api(`/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
      if (resp.ok) return await resp.json();
    } catch {
      // unreachable: see above
    }
    return null;
  }

  // DELETE /jobs/{id} of the page's last job once nothing shows it any more. Best effort.
  forget() {
    clearTimeout(this.timer);
    const id = this.kept;
    this.job = null;
    this.kept = null;
    if (id) api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => {});
  }

  clearPreview() {
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    this.previewAt = 0;
  }

  async refreshPreview(job, force = false) {
    if (this.previewBusy) {
      if (force) this.previewAgain = job;
      return;
    }
    if (!force && performance.now() - this.previewAt < this.previewMs) return;
    this.previewBusy = true;
    this.previewAt = performance.now();
    try {
      const resp = await api(job.preview);
      if (resp.ok && this.kept === job.id) {
        const blob = await resp.blob();
        if (this.kept === job.id) {
          const old = this.previewUrl;
          this.previewUrl = URL.createObjectURL(blob);
          this.onPreview(this.previewUrl, job);
          if (old) URL.revokeObjectURL(old);
        }
      }
    } catch {
      // the next poll tries again
    } finally {
      this.previewBusy = false;
      const again = this.previewAgain;
      this.previewAgain = null;
      if (again) this.refreshPreview(again, true);
    }
  }
}

// A job's progress: the bar, and "step 40 of 300, about 1 min 5 s left" (not live: it would
// chatter; the status line says what the job is doing).
function showJobProgress(job, bar, text) {
  bar.value = job.progress || 0;
  bar.dataset.state = job.state;
  let steps = job.steps ? `step ${job.step} of ${job.steps}` : "";
  if (job.state === "running" && job.eta_s != null) {
    steps += `${steps ? ", " : ""}about ${seconds(job.eta_s)} left`;
  }
  text.textContent = steps;
}

function lossText(losses) {
  const shown = ["style", "content"].filter((k) => typeof losses[k] === "number");
  return shown.map((k) => `${k} loss ${losses[k].toPrecision(3)}`).join(", ");
}

// -- add a style: a painting -> POST /styles (a trainer job, run by `stylebox worker`) -> poll
// GET /jobs/{id} -> the servers load the new model -> the picker shows and picks the style ----

const STYLE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;  // the model card's rule (and the server's)
const ADD_FRIENDLY = {
  403: "Adding styles is switched off on this server.",
  409: "The style cannot be added.",
  413: "The painting is too large.",
  415: "That file is not an image stylebox can read.",
  422: "The painting or the name could not be used.",
  503: "No trainer can take the painting now.",
};
const STYLES_WAIT_MS = 20000;  // how long a done edit may take to reach this server's model
// painting: the chosen File; busy: from the request to the picker's update; follow: the edit's
// job (JobFollower: .job while it runs, .kept until the next edit); workers: GET /jobs's count
// (null until known); watch: the timer that asks again while no worker runs.
const paint = {
  painting: null, thumbUrl: null, busy: false, watch: 0, workers: null,
  suggested: "",  // the name this page made up from the file's name (replaced with the file)
  sent: null,     // the painting of the edit under way (the form is cleared if it still shows it)
  follow: new JobFollower({
    show: showAddJob,
    lost: (message) => {
      paint.busy = false;
      updateAddControls();
      setAddStatus("Nothing changed.");
      showError(message, "add");
    },
    preview: (url) => {
      $("add-preview").src = url;
      $("add-figure").hidden = false;
    },
    wantsPreview: (job) => job.kind === "add-style",  // a removal has no picture
  }),
};

function addMessage(status, body) {
  const detail = (body && (body.detail || body.title)) || "";
  const head = status === 401 ? FRIENDLY[401]
    : ADD_FRIENDLY[status] || FRIENDLY[status] || `The server answered ${status}.`;
  return detail ? `${head} ${detail}` : head;
}

function setAddStatus(message) {  // aria-live: changed only when the words change
  const el = $("add-status");
  if (el.textContent !== message) el.textContent = message;
}

// Why `name` cannot name a new style, in words ("" when it can).
function nameProblem(name) {
  if (!name) return "Give the style a name.";
  if (name.length > 64) return "A name has at most 64 characters.";
  if (!STYLE_NAME.test(name)) {
    const lower = name.toLowerCase().replace(/\s+/g, "-");
    if (STYLE_NAME.test(lower)) return `Use lowercase letters and no spaces: \u201c${lower}\u201d.`;
    if (/^[-_]/.test(name)) return "Start the name with a letter or a digit.";
    const bad = [...name].find((c) => !/[a-z0-9_-]/.test(c));
    return `\u201c${bad}\u201d cannot be in a name: use lowercase letters (a\u2013z), ` +
      "digits, - and _.";
  }
  if (Object.hasOwn(state.titles, name)) {
    return `There is already a style named \u201c${name}\u201d: choose another name.`;
  }
  return "";
}

function showNameProblem(message) {
  const el = $("style-name-problem");
  el.textContent = message;
  el.hidden = !message;
  $("style-name").setAttribute("aria-invalid", String(Boolean(message)));
}

// A name made from the file's name ("Harbour at Dusk.jpg" -> "harbour-at-dusk"), free.
function suggestName(fileName) {
  const stem = fileName.replace(/\.[^.]*$/, "").toLowerCase().normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "").replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^[-_]+/, "").replace(/-+$/, "").slice(0, 56);
  let name = stem || "my-painting";
  for (let i = 2; Object.hasOwn(state.titles, name); i += 1) name = `${stem || "my-painting"}-${i}`;
  return name;
}

function updateAddControls() {
  const editable = !state.card || Boolean(state.card.export && state.card.export.checkpoint);
  $("add-start").disabled = paint.busy || !paint.painting || paint.workers === 0 || !editable;
  $("add-cancel").hidden = !paint.follow.job;
  for (const button of $("added-list").querySelectorAll("button")) {
    button.disabled = paint.busy || paint.workers === 0;
  }
}

function setPainting(file) {
  if (!file) return;
  if (!paint.busy) showError("", "add");
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image: choose a painting (PNG, JPEG, WebP, \u2026).`,
      "add");
    return;
  }
  paint.painting = file;
  if (paint.thumbUrl) URL.revokeObjectURL(paint.thumbUrl);
  paint.thumbUrl = URL.createObjectURL(file);
  const thumb = $("painting-thumb");
  thumb.src = paint.thumbUrl;
  thumb.alt = `Your painting, ${file.name}`;
  thumb.hidden = false;
  $("painting-name").textContent = file.name;
  const name = $("style-name");
  if (!name.value.trim() || name.value === paint.suggested) {  // never over the user's own
    name.value = paint.suggested = suggestName(file.name);
    showNameProblem("");
  }
  updateAddControls();
  if (!paint.busy) setAddStatus("Ready: press \u201cAdd the style\u201d.");
}

function clearPainting() {
  paint.painting = null;
  if (paint.thumbUrl) URL.revokeObjectURL(paint.thumbUrl);
  paint.thumbUrl = null;
  const thumb = $("painting-thumb");
  thumb.removeAttribute("src");
  thumb.hidden = true;
  $("painting-name").textContent = "";
  $("painting-file").value = "";
  $("style-name").value = paint.suggested = "";
  $("style-title").value = "";
}

// GET /jobs when the tab opens: no worker means nothing would train the painting, so say so
// (and how to start one) before an upload for nothing; look again every few seconds until
// one runs. Also says when the model cannot take a new style at all.
async function checkTrainer() {
  clearTimeout(paint.watch);
  if (state.mode !== "add") return;
  let info = null;
  try {
    const resp = await api("/jobs");
    if (resp.ok) info = await resp.json();
  } catch {
    // unreachable for now: ask again below
  }
  if (state.mode !== "add") return;
  const notes = [];
  if (state.card && !(state.card.export && state.card.export.checkpoint)) {
    notes.push(`The served model (${state.card.name} ${state.card.version}) does not record ` +
      "the checkpoint it was exported from, so no style can be added to it; re-export it " +
      "with `stylebox export CHECKPOINT -o MODEL.onnx`, which records it.");
  }
  if (info) {
    paint.workers = info.workers;
    if (info.workers === 0) {
      notes.push(`No trainer worker is running, so a painting cannot be trained now: ` +
        `${info.start_worker}. This page checks again every few seconds.`);
    } else if (info.queued + info.running >= info.workers && !paint.follow.job) {
      notes.push(`The trainer is busy (${info.running} running, ${info.queued} waiting): a ` +
        "new style starts after those.");
    }
  }
  const notice = $("add-notice");
  notice.textContent = notes.join(" ");
  notice.hidden = !notes.length;
  if (!info || info.workers === 0) paint.watch = setTimeout(checkTrainer, 3000);
  updateAddControls();
}

function clearAddProgress() {
  $("add-progress").hidden = true;
  $("add-bar").value = 0;
  $("add-steps").textContent = "";
  $("add-losses").textContent = "";
  $("add-figure").hidden = true;
  $("add-preview").removeAttribute("src");
  paint.follow.clearPreview();
}

// A style edit's request (POST /styles or DELETE /styles/{name}): its job, or why not.
async function submitEdit(url, options, doing) {
  paint.follow.forget();
  showError("", "add");
  clearAddProgress();
  paint.busy = true;
  updateAddControls();
  setAddStatus(doing);
  let resp;
  let body = null;
  try {
    resp = await api(url, options);
    body = await resp.json();
  } catch (e) {
    if (!resp) {
      paint.busy = false;
      updateAddControls();
      setAddStatus("Nothing changed.");
      showError(`Could not reach stylebox: ${e.message}`, "add");
      return;
    }
  }
  if (resp.status !== 202 || !body) {
    paint.busy = false;
    updateAddControls();
    setAddStatus("Nothing changed.");
    if (resp.status === 401) askForKey(addMessage(401, body));
    else showError(addMessage(resp.status, body), "add");
    if (resp.status === 503) checkTrainer();  // the worker may have gone
    return;
  }
  paint.follow.update(body);
}

function startAdd() {
  if (!paint.painting || paint.busy) return;
  const name = $("style-name").value.trim();
  const why = nameProblem(name);
  if (why) {
    showNameProblem(why);
    $("style-name").focus();
    return;
  }
  const form = new FormData();
  form.append("painting", paint.painting, paint.painting.name);
  form.append("name", name);
  const title = $("style-title").value.trim();
  if (title) form.append("title", title);
  paint.sent = paint.painting;
  submitEdit("/styles", { method: "POST", body: form },
    `Uploading ${paint.painting.name}\u2026`);
}

function removeAdded(name) {
  if (paint.busy) return;
  const title = state.titles[name] || name;
  if (!window.confirm(`Remove the style \u201c${title}\u201d from the model? Every photo, clip ` +
      "and camera loses it; this cannot be undone here.")) return;
  submitEdit(`/styles/${encodeURIComponent(name)}`, { method: "DELETE" },
    `Removing ${name}\u2026`);
}

// Each status of the edit's job (paint.follow): its progress, then the outcome.
function showAddJob(job) {
  $("add-progress").hidden = false;
  showJobProgress(job, $("add-bar"), $("add-steps"));
  $("add-losses").textContent = lossText(job.losses || {});
  $("add-caption").textContent = job.state === "done" ? "The sample photo in the new style"
    : "The sample photo in the new style, as it trains";
  if (JOB_ACTIVE.has(job.state)) {
    setAddStatus(`${job.style}: ${job.message || job.state}\u2026`);
    updateAddControls();
    return;
  }
  if (job.state === "done") {
    editDone(job);
    return;
  }
  paint.busy = false;
  updateAddControls();
  if (job.state === "failed") {
    setAddStatus(job.kind === "add-style" ? `${job.style} was not added.`
      : `${job.style} was not removed.`);
    showError(addMessage(job.error ? job.error.status : 0, job.error), "add");
  } else {
    setAddStatus("Cancelled: the model is unchanged.");
  }
}

// The job is done: every server loads the new model within seconds; wait until this one
// has, then show the picker with the new style picked (or without the removed one).
async function editDone(job) {
  const adding = job.kind === "add-style";
  setAddStatus(`${job.style}: done; waiting for the server to load ` +
    `${job.model || "the new model"}\u2026`);
  const deadline = performance.now() + STYLES_WAIT_MS;
  let loaded = false;
  while (!(loaded = await loadStyles({ name: job.style, present: adding }))
         && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  paint.busy = false;
  updateAddControls();
  if (!loaded) {
    setAddStatus(`${job.style}: done, but this server does not show it yet.`);
    showError(`The job made ${job.model || "a new model"}, but this server has not loaded it ` +
      `within ${STYLES_WAIT_MS / 1000} s; reload the page in a moment.`, "add");
    return;
  }
  if (adding) {
    if (paint.painting === paint.sent) clearPainting();  // not one chosen meanwhile
    setAddStatus(`${job.style} is ready \u2014 it is picked under Style; switch to Photo, ` +
      "Video or Live camera to use it.");
  } else {
    setAddStatus(`${job.style} is removed.`);
  }
}

// POST /jobs/{id}/cancel: a cancelled edit leaves the model as it was; one that had just
// ended answers as it is, and is shown so.
async function cancelAdd() {
  if (!paint.follow.job) return;
  const ended = await paint.follow.cancel();
  if (ended && ended.state !== "cancelled") {
    paint.follow.update(ended);
    return;
  }
  paint.busy = false;
  updateAddControls();
  setAddStatus("Cancelled: the model is unchanged.");
}

// The styles added from a painting (the card's last add of each says via "upload"): only
// those can be removed here.
function renderAdded() {
  const edits = (state.card && state.card.training && state.card.training.style_edits) || [];
  const last = {};
  for (const e of edits) if (e.op === "add") last[e.name] = e;
  const names = Object.keys(state.titles).filter((n) => last[n] && last[n].via === "upload");
  const list = $("added-list");
  list.replaceChildren();
  for (const name of names) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = state.titles[name];
    if (state.titles[name] !== name) {  // and the name the API knows it by
      const code = document.createElement("code");
      code.className = "muted";
      code.textContent = name;
      label.append(" ", code);
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button small";
    button.textContent = "Remove";
    button.setAttribute("aria-label", `Remove the style ${state.titles[name]}`);
    button.addEventListener("click", () => removeAdded(name));
    li.append(label, button);
    list.append(li);
  }
  $("added").hidden = !names.length;
  updateAddControls();
}

// -- best quality: the photo -> POST /optimize (a trainer job: Gatys et al.'s per-image
// optimisation toward one style, run by `stylebox worker`) -> followed like a style edit ->
// GET /jobs/{id}/result, shown under the fast result -----------------------------------------

const BEST_SIDE = 512;  // the render's longer side: minutes at this size on the worker
const BEST_MIN_SIDE = 64;  // the service refuses a smaller photo (422)
const BEST_FRIENDLY = {
  404: "That style does not exist (any more).",
  413: "The photo is too large for a best-quality render.",
  415: "That file is not an image stylebox can read.",
  422: "The photo or the style could not be used.",
  503: "No trainer can render the photo now.",
};
// follow: the render's job; workers: GET /jobs's count when Photo mode last showed (null:
// not known, e.g. before the key); busy: from the upload until the job ends; file, style: what
// the render shown is of; resultUrl: its PNG, once done.
const best = {
  workers: null, busy: false, file: null, style: "", resultUrl: null,
  follow: new JobFollower({
    show: showBest,
    lost: (message) => {
      best.busy = false;
      updateBestControls();
      setBestStatus("No best-quality render.");
      setBestError(message);
    },
    preview: (url) => {
      const img = $("best-image");
      img.src = url;
      img.alt = `The best-quality render of ${best.file.name} so far`;
      img.dataset.shows = "preview";
      $("best-caption").textContent = "The render so far (it improves every few seconds)";
      $("best-figure").hidden = false;
    },
    wantsPreview: (job) => job.state !== "done",  // then the PNG itself replaces it
    previewMs: 3000,
  }),
};

function setBestStatus(message) {  // aria-live: changed only when the words change
  const el = $("best-status");
  if (el.textContent !== message) el.textContent = message;
}

function setBestError(message) {
  const el = $("best-error");
  el.textContent = message;
  el.hidden = !message;
}

function bestMessage(status, body) {
  const detail = (body && (body.detail || body.title)) || "";
  const head = status === 401 ? FRIENDLY[401]
    : BEST_FRIENDLY[status] || FRIENDLY[status] || `The server answered ${status}.`;
  return detail ? `${head} ${detail}` : head;
}

// Why the button is off, in words ("" when it is on).
function bestProblem() {
  if (best.busy) return "";  // the render under way shows its own status
  if (best.workers === 0) {
    return "Unavailable: no trainer worker is running on this server.";
  }
  const picked = Object.entries(state.weights).filter(([, w]) => w > 0);
  if (picked.length > 1) {
    return "Best quality renders one style, not a blend: pick a single style.";
  }
  const img = $("before");
  if (img.naturalWidth && Math.min(img.naturalWidth, img.naturalHeight) < BEST_MIN_SIDE) {
    return `The photo needs at least ${BEST_MIN_SIDE} px on each side.`;
  }
  return "";
}

// The panel shows once the photo has a fast result (or a render is under way or shown).
function updateBestControls() {
  const why = bestProblem();
  $("best").hidden = !(state.resultUrl || best.busy || best.follow.kept);
  const start = $("best-start");
  start.disabled = best.busy || Boolean(why) || !state.file || !state.resultUrl;
  const el = $("best-why");
  if (el.textContent !== why) el.textContent = why;
  el.hidden = !why;
  $("best-cancel").hidden = !best.follow.job;
}

// GET /jobs when Photo mode shows (and for each new photo): is a worker there to render? Once,
// not polled: a later click that finds none says so (503) and looks again.
async function checkBest() {
  if (state.mode !== "photo") return;
  let workers = null;
  try {
    const resp = await api("/jobs");
    if (resp.ok) workers = (await resp.json()).workers;
  } catch {
    // unreachable: not known; a click finds out
  }
  best.workers = workers;
  updateBestControls();
}

function clearBest() {
  best.follow.forget();
  best.follow.clearPreview();
  if (best.resultUrl) URL.revokeObjectURL(best.resultUrl);
  best.resultUrl = null;
  $("best-progress").hidden = true;
  $("best-bar").value = 0;
  $("best-steps").textContent = "";
  $("best-figure").hidden = true;
  const img = $("best-image");
  img.removeAttribute("src");
  delete img.dataset.shows;
  $("best-losses").hidden = true;
  $("best-download").hidden = true;
  setBestStatus("");
  setBestError("");
}

async function startBest() {
  if (!state.file || best.busy || bestProblem()) return;
  const style = styleSpec();  // one name (bestProblem refuses a blend)
  clearBest();
  Object.assign(best, { busy: true, file: state.file, style });
  updateBestControls();
  setBestStatus(`Uploading ${best.file.name} for the best-quality render\u2026`);
  const form = new FormData();
  form.append("photo", best.file, best.file.name);
  const params = new URLSearchParams({
    style: style,
    max_side: String(BEST_SIDE),
  });
  let resp;
  let body = null;
  try {
    resp = await api(`/optimize?${params}`, { method: "POST", body: form });
    body = await resp.json();
  } catch (e) {
    if (!resp) {
      best.busy = false;
      updateBestControls();
      setBestStatus("No best-quality render.");
      setBestError(`Could not reach stylebox: ${e.message}`);
      return;
    }
  }
  if (resp.status !== 202 || !body) {
    best.busy = false;
    updateBestControls();
    setBestStatus("No best-quality render.");
    if (resp.status === 401) askForKey(bestMessage(401, body));
    else setBestError(bestMessage(resp.status, body));
    if (resp.status === 503) checkBest();  // the worker may have gone
    return;
  }
  best.follow.update(body);
}

// Each status of the render's job (best.follow).
function showBest(job) {
  const title = state.titles[best.style] || best.style;
  $("best-progress").hidden = false;
  showJobProgress(job, $("best-bar"), $("best-steps"));
  if (JOB_ACTIVE.has(job.state)) {
    setBestStatus(`Best quality in ${title}: ${job.message || job.state}\u2026`);
    updateBestControls();
    return;
  }
  best.busy = false;
  updateBestControls();
  if (job.state === "done") {
    bestDone(job, title);
  } else if (job.state === "failed") {
    $("best-figure").hidden = true;
    setBestStatus("No best-quality render.");
    setBestError(bestMessage(job.error ? job.error.status : 0, job.error));
  } else {
    $("best-figure").hidden = true;  // a half-done render is not the result
    setBestStatus("Best quality: cancelled.");
  }
}

// "style loss 0.22 (fast model 1.9), content loss 0.61 (fast model 0.31)": the job's losses
// for the render and for the fast model's output it started from (lower is closer).
function bestLossText(losses) {
  const fmt = (x) => x.toPrecision(2);
  return ["style", "content"].filter((k) => typeof losses[k] === "number").map((k) => {
    const start = losses[`start_${k}`];
    return `${k} loss ${fmt(losses[k])}` +
      (typeof start === "number" ? ` (fast model ${fmt(start)})` : "");
  }).join(", ");
}

async function bestDone(job, title) {
  setBestStatus(`Best quality in ${title}: fetching the render\u2026`);
  let blob = null;
  try {
    const resp = await api(job.result);
    if (best.follow.kept !== job.id) return;  // replaced meanwhile
    if (!resp.ok) {
      setBestStatus("No best-quality render.");
      setBestError(await problemMessage(resp));
      return;
    }
    blob = await resp.blob();
  } catch (e) {
    setBestStatus("No best-quality render.");
    setBestError(`Could not reach stylebox: ${e.message}`);
    return;
  }
  if (best.follow.kept !== job.id) return;  // replaced meanwhile
  if (best.resultUrl) URL.revokeObjectURL(best.resultUrl);
  best.resultUrl = URL.createObjectURL(blob);
  const img = $("best-image");
  img.src = best.resultUrl;
  img.alt = `${best.file.name} in ${title}, best quality`;
  img.dataset.shows = "result";
  img.decode().then(() => {
    if (img.src === best.resultUrl) {
      $("best-caption").textContent =
        `Best quality: ${title}, ${img.naturalWidth} \u00d7 ${img.naturalHeight} PNG`;
    }
  }).catch(() => {});
  $("best-caption").textContent = `Best quality: ${title}`;
  $("best-figure").hidden = false;
  best.follow.clearPreview();
  const losses = $("best-losses");
  losses.textContent = bestLossText(job.losses || {});
  losses.hidden = !losses.textContent;
  const dl = $("best-download");
  const base = (best.file.name.replace(/\.[^.]*$/, "") || "photo").slice(0, 60);
  dl.href = best.resultUrl;
  dl.download = `${base}-${best.style}-best.png`;
  dl.hidden = false;
  setBestStatus(`Best quality in ${title}: ${job.message || "done"}.`);
}

async function cancelBest() {
  if (!best.follow.job) return;
  const ended = await best.follow.cancel();
  if (ended && ended.state !== "cancelled") {
    best.follow.update(ended);
    return;
  }
  best.busy = false;
  updateBestControls();
  $("best-figure").hidden = true;
  setBestStatus("Best quality: cancelled.");
}

// -- wiring -------------------------------------------------------------------------------

// A drop zone: a file dropped on `zone` goes to `take`.
function dropZone(zone, take) {
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    take(e.dataTransfer.files[0]);
  });
}

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
  $("painting-file").addEventListener("change", (e) => setPainting(e.target.files[0]));
  $("style-name").addEventListener("input", () => {
    const name = $("style-name").value.trim();
    showNameProblem(name ? nameProblem(name) : "");  // an empty field waits for "Add"
  });
  for (const id of ["style-name", "style-title"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !$("add-start").disabled) startAdd();
    });
  }
  $("add-start").addEventListener("click", startAdd);
  $("add-cancel").addEventListener("click", cancelAdd);
  $("best-start").addEventListener("click", startBest);
  $("best-cancel").addEventListener("click", cancelBest);
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
    if (!state.stylesLoaded) loadModels().then(() => loadStyles());
    schedule(0);
    checkTrainer();  // the add tab's look at GET /jobs needs the key too
    checkBest();
  });
  dropZone($("drop"), setPhoto);
  dropZone($("painting-drop"), setPainting);
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
  $("model").addEventListener("change", () => chooseModel($("model").value));
  loadModels().then(() => loadStyles());
  checkBest();
}

init();
