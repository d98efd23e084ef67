import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL("../../", import.meta.url));

// `@dmasim/<name>` resolves to the package's source, as in the vitest config: the site bundles the model
// from its sources, so it needs no prior build of the packages.
const packageAliases = readdirSync(`${root}packages`).flatMap((name) => [
  { find: new RegExp(`^@dmasim/${name}/([a-z-]+)$`), replacement: `${root}packages/${name}/src/$1.ts` },
  { find: new RegExp(`^@dmasim/${name}$`), replacement: `${root}packages/${name}/src/index.ts` },
]);

// The site opens from disk (file://), where Chromium refuses module scripts: the page is ONE classic
// script (an IIFE) plus its stylesheet; public/index.html loads ./scenario.js first, then it.
export default defineConfig({
  resolve: { alias: packageAliases },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  publicDir: "public",
  build: {
    outDir: "dist/site",
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: false,
    rollupOptions: {
      // zod's sources carry `@__PURE__` notes in places Rollup cannot use; it drops them, harmlessly.
      onwarn(warning, warn) {
        if (warning.code !== "INVALID_ANNOTATION") warn(warning);
      },
    },
    lib: {
      entry: "src/app/main.ts",
      formats: ["iife"],
      name: "DmasimExplorer",
      fileName: () => "explorer.js",
      cssFileName: "explorer",
    },
  },
});
