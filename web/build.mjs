// Bundles the status page: src/main.js (+ uPlot) -> <out>/assets/app.js, src/style.css (+ uPlot's
// CSS) -> <out>/assets/app.css, src/index.html -> <out>/index.html. Nothing is fetched at run
// time: no CDN, no web fonts. Usage: node build.mjs [--out DIR] (default: ./dist).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf('--out');
const out = resolve(at >= 0 && args[at + 1] ? args[at + 1] : join(here, 'dist'));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

await build({
  entryPoints: { app: join(here, 'src/main.js') },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outdir: join(out, 'assets'),
  // app.css is emitted beside app.js because main.js imports the stylesheets.
  legalComments: 'none',
  logLevel: 'warning',
  metafile: false,
});
copyFileSync(join(here, 'src/index.html'), join(out, 'index.html'));

for (const f of ['index.html', 'assets/app.js', 'assets/app.css']) {
  console.log(`web: ${f} ${statSync(join(out, f)).size} bytes`);
}
