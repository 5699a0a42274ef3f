// The panosamic viewer: one page that shows the panoramas of a `panosamic segment` run.
//
// Works from file:// and offline: the run's list (`run.js`) and every panorama's data
// (`data/NNNN.js`: the picture, the class indices, the instance indices, the point
// cloud, all as data URLs) are classic scripts, loaded when a panorama is first shown.
// Photo Sphere Viewer shows the sphere, three.js with its PLY loader the cloud.

import { Viewer } from "@photo-sphere-viewer/core";
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { PLYLoader } from "three/examples/jsm/loaders/PLYLoader.js";

const run = window.PANOSAMIC_RUN;
const state = {
  index: -1,
  opacity: 0.5,
  hidden: new Set(),
  view: "sphere",
  cloudColours: "classes",
  entries: new Map(), // index -> promise of the decoded panorama
  waiting: new Map(), // key -> resolve of the data script
  cloudShown: -1, // the panorama whose cloud the orbit camera is framed on
};
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ data loading
window.PANOSAMIC_PANORAMA = (key, data) => {
  const resolve = state.waiting.get(key);
  state.waiting.delete(key);
  if (resolve) resolve(data);
};

function loadScript(index) {
  const { key, data } = run.panoramas[index];
  return new Promise((resolve, reject) => {
    state.waiting.set(key, resolve);
    const script = document.createElement("script");
    script.src = data;
    script.onerror = () => {
      state.waiting.delete(key);
      script.remove();
      reject(new Error(`cannot load ${data}: write the viewer again (panosamic view)`));
    };
    document.head.appendChild(script);
  });
}

function pixels(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = image.width;
      canvas.height = image.height;
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      resolve(context.getImageData(0, 0, image.width, image.height));
    };
    image.onerror = () => reject(new Error("cannot decode a picture"));
    image.src = url;
  });
}

// one promise per panorama: a second request while it loads waits for the same one
function entry(index) {
  if (!state.entries.has(index)) {
    const loading = loadScript(index).then(async (data) => {
      const [picture, labels, instances] = await Promise.all([
        pixels(data.image),
        pixels(data.labels),
        pixels(data.instances),
      ]);
      return { picture, labels, instances, cloud: data.cloud, cloudObject: null };
    });
    loading.catch(() => state.entries.delete(index)); // a failed load may be tried again
    state.entries.set(index, loading);
  }
  return state.entries.get(index);
}

// ------------------------------------------------------------------ the sphere
const sphere = new Viewer({
  container: $("sphere"),
  navbar: ["zoom", "move", "caption", "fullscreen"],
  defaultZoomLvl: 0,
  touchmoveTwoFingers: false,
  mousewheelCtrlKey: false,
});

function composed(value) {
  const { picture, labels } = value;
  const out = new ImageData(picture.width, picture.height);
  const a = state.opacity;
  for (let p = 0; p < picture.data.length; p += 4) {
    const k = labels.data[p];
    const colour = run.palette[k];
    if (colour === undefined || state.hidden.has(k)) {
      out.data[p] = picture.data[p];
      out.data[p + 1] = picture.data[p + 1];
      out.data[p + 2] = picture.data[p + 2];
    } else {
      out.data[p] = (1 - a) * picture.data[p] + a * colour[0];
      out.data[p + 1] = (1 - a) * picture.data[p + 1] + a * colour[1];
      out.data[p + 2] = (1 - a) * picture.data[p + 2] + a * colour[2];
    }
    out.data[p + 3] = 255;
  }
  const canvas = document.createElement("canvas");
  canvas.width = picture.width;
  canvas.height = picture.height;
  canvas.getContext("2d").putImageData(out, 0, 0);
  return canvas.toDataURL("image/jpeg", 0.92);
}

async function showSphere() {
  const value = await entry(state.index);
  document.body.dataset.state = "rendering";
  sphere.autoSize();
  await sphere.setPanorama(composed(value), {
    transition: false,
    showLoader: false,
    caption: run.panoramas[state.index].name,
    position: sphere.getPosition(),
  });
  shown = value;
  await drawn();
  document.body.dataset.state = "ready";
}

// resolves once the sphere has drawn the new panorama on screen
function drawn() {
  return new Promise((resolve) => {
    sphere.addEventListener("render", () => requestAnimationFrame(() => resolve()), { once: true });
    sphere.needsUpdate();
  });
}

// the class (and instance) under the pointer: the label pixel of the pointer's direction
// (yaw 0 is the picture's centre column, yaw grows to the right, pitch up)
let shown = null; // the decoded panorama on screen
$("sphere").addEventListener("mousemove", (event) => {
  const value = shown;
  const tooltip = $("tooltip");
  if (!value || state.view !== "sphere") return;
  const box = $("sphere").getBoundingClientRect();
  try {
    const { yaw, pitch } = sphere.dataHelper.viewerCoordsToSphericalCoords({
      x: event.clientX - box.left,
      y: event.clientY - box.top,
    });
    if (!Number.isFinite(yaw) || !Number.isFinite(pitch)) throw new Error("outside the sphere");
    const { labels, instances } = value;
    const turn = (((yaw / (2 * Math.PI) + 0.5) % 1) + 1) % 1;
    const x = Math.min(labels.width - 1, Math.floor(turn * labels.width));
    const y = Math.min(labels.height - 1, Math.max(0, Math.floor((0.5 - pitch / Math.PI) * labels.height)));
    const p = 4 * (y * labels.width + x);
    const k = labels.data[p];
    const instance = instances.data[p] + 256 * instances.data[p + 1] - 1;
    tooltip.textContent =
      (run.classNames[k] ?? "no class") + (instance >= 0 ? ` · instance ${instance}` : "");
    tooltip.dataset.x = String(x);
    tooltip.dataset.y = String(y);
    tooltip.style.left = `${event.clientX + 14}px`;
    tooltip.style.top = `${event.clientY + 14}px`;
    tooltip.hidden = false;
  } catch {
    tooltip.hidden = true;
  }
});
$("sphere").addEventListener("mouseleave", () => {
  $("tooltip").hidden = true;
});

// ------------------------------------------------------------------ the cloud
const renderer = new THREE.WebGLRenderer({ canvas: $("cloud"), antialias: true, preserveDrawingBuffer: true });
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x202428);
const camera = new THREE.PerspectiveCamera(60, 1, 0.05, 500);
camera.up.set(0, 0, 1); // the clouds' frame: x forward, y left, z up
const controls = new OrbitControls(camera, $("cloud"));
controls.addEventListener("change", () => renderer.render(scene, camera));

function cloudObject(value) {
  if (value.cloudObject) return value.cloudObject;
  const bytes = Uint8Array.from(atob(value.cloud), (c) => c.charCodeAt(0));
  const loader = new PLYLoader();
  loader.setCustomPropertyNameMapping({ label: ["label"] });
  const geometry = loader.parse(bytes.buffer);
  const material = new THREE.PointsMaterial({ size: 0.03, vertexColors: true });
  value.cloudObject = new THREE.Points(geometry, material);
  value.pictureColours = geometry.getAttribute("color").clone();
  return value.cloudObject;
}

function paintCloud(points, value) {
  const geometry = points.geometry;
  const labels = geometry.getAttribute("label");
  const colours =
    state.cloudColours === "picture" ? value.pictureColours.clone() : new THREE.Float32BufferAttribute(labels.count * 3, 3);
  const visible = [];
  for (let i = 0; i < labels.count; i++) {
    const k = labels.getX(i);
    if (state.cloudColours !== "picture") {
      const colour = run.palette[k] ?? [128, 128, 128];
      colours.setXYZ(i, colour[0] / 255, colour[1] / 255, colour[2] / 255);
    }
    if (!state.hidden.has(k)) visible.push(i);
  }
  geometry.setAttribute("color", colours);
  geometry.setIndex(visible);
}

async function showCloud() {
  const value = await entry(state.index);
  const box = $("cloud").getBoundingClientRect();
  renderer.setSize(box.width, box.height, false);
  camera.aspect = box.width / Math.max(1, box.height);
  camera.updateProjectionMatrix();
  scene.clear();
  if (!value.cloud) {
    document.body.dataset.state = "ready";
    return;
  }
  const points = cloudObject(value);
  paintCloud(points, value);
  scene.add(points);
  if (state.cloudShown !== state.index) {
    // frame a newly shown cloud; class toggles and recolouring keep the camera where it is
    points.geometry.computeBoundingSphere();
    const { center, radius } = points.geometry.boundingSphere;
    controls.target.copy(center);
    camera.position.set(center.x - 1.6 * radius, center.y - 1.2 * radius, center.z + 1.2 * radius);
    controls.update();
    state.cloudShown = state.index;
  }
  renderer.render(scene, camera);
  document.body.dataset.state = "ready";
}

// ------------------------------------------------------------------ the page
function legend() {
  const shares = run.panoramas[state.index]?.shares ?? {};
  const list = $("legend");
  list.replaceChildren();
  run.classNames.forEach((name, k) => {
    const row = document.createElement("label");
    row.className = "class";
    row.dataset.class = name;
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.checked = !state.hidden.has(k);
    toggle.addEventListener("change", () => {
      if (toggle.checked) state.hidden.delete(k);
      else state.hidden.add(k);
      refresh();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${run.palette[k].join(",")})`;
    const share = shares[name] ? ` ${(100 * shares[name]).toFixed(1)} %` : "";
    row.append(toggle, swatch, `${name}${share}`);
    list.appendChild(row);
  });
}

function refresh() {
  if (state.index < 0) return;
  return state.view === "sphere" ? showSphere() : showCloud();
}

let latest = -1; // the panorama asked for last: a slower earlier load does not win
async function select(index) {
  latest = index;
  document.body.dataset.state = "loading";
  try {
    await entry(index);
  } catch (error) {
    if (latest === index) {
      document.body.dataset.state = "error";
      $("message").textContent = error.message;
      $("message").hidden = false;
    }
    throw error;
  }
  if (latest !== index) return;
  $("message").hidden = true;
  state.index = index;
  document.body.dataset.panorama = String(index);
  for (const item of $("panoramas").children) {
    item.classList.toggle("current", Number(item.dataset.index) === index);
  }
  $("cloud-button").disabled = !run.panoramas[index].cloud;
  if (state.view === "cloud" && !run.panoramas[index].cloud) setView("sphere");
  legend();
  await refresh();
}

function setView(view) {
  state.view = view;
  $("sphere").hidden = view !== "sphere";
  $("cloud").hidden = view !== "cloud";
  $("sphere-button").classList.toggle("current", view === "sphere");
  $("cloud-button").classList.toggle("current", view === "cloud");
  refresh();
}

function build() {
  document.title = `panosamic: ${run.title}`;
  $("title").textContent = run.title;
  run.panoramas.forEach((panorama, index) => {
    const item = document.createElement("li");
    item.textContent = panorama.name;
    item.dataset.index = String(index);
    item.addEventListener("click", () => select(index));
    $("panoramas").appendChild(item);
  });
  $("opacity").addEventListener("change", (event) => {
    state.opacity = Number(event.target.value) / 100;
    refresh();
  });
  $("sphere-button").addEventListener("click", () => setView("sphere"));
  $("cloud-button").addEventListener("click", () => setView("cloud"));
  $("cloud-colours").addEventListener("change", (event) => {
    state.cloudColours = event.target.value;
    refresh();
  });
  window.panosamic = { state, select, setView };
  if (run.panoramas.length) select(0);
}

build();
