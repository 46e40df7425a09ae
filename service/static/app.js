// stylebox page: plain JS, no build step. Reads styles from GET /styles, posts to /stylize.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_UPLOAD = Number(document.body.dataset.maxUploadBytes) || 0;
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
};

// fetch() with the API key, when the user gave one (see the key form).
function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.apiKey) headers.set("X-API-Key", state.apiKey);
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

function showError(message) {
  const el = $("error");
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

// -- wiring -------------------------------------------------------------------------------

function init() {
  if (MAX_UPLOAD) $("max-upload").textContent = megabytes(MAX_UPLOAD);
  $("file").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.apiKey = $("api-key").value.trim();
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
