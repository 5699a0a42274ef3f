// Bundles src/main.js with Photo Sphere Viewer and three.js into one classic script
// (../static/viewer.js, an IIFE: module scripts do not load from file://) and copies the
// libraries' stylesheet and licences beside it. Run: npm ci && npm run build
import { copyFileSync, mkdirSync } from "node:fs";
import { build } from "esbuild";

const out = "../static";
mkdirSync(`${out}/licenses`, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "iife",
  minify: true,
  target: "es2020",
  legalComments: "eof",
  outfile: `${out}/viewer.js`,
});
copyFileSync("node_modules/@photo-sphere-viewer/core/index.css", `${out}/photo-sphere-viewer.css`);
copyFileSync("node_modules/@photo-sphere-viewer/core/LICENSE", `${out}/licenses/photo-sphere-viewer-5.15.1.LICENSE`);
copyFileSync("node_modules/three/LICENSE", `${out}/licenses/three-0.185.1.LICENSE`);
