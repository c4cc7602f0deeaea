// Vite config of the Ferrobase dashboard. Served by the server at /dashboard/
// (see server/src/dashboard/), so every asset URL starts with that base.
// No React plugin: esbuild compiles JSX itself and the dashboard needs no
// fast refresh to be built (see STACK notes: @vitejs/plugin-react does not
// install on this machine's toolchain).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/dashboard/",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // No source maps in the committed build: they would double its size.
    sourcemap: false,
    chunkSizeWarningLimit: 600,
    rollupOptions: {
      // Mantine marks its modules "use client" (for React Server Components);
      // meaningless in a plain SPA bundle.
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
      output: {
        manualChunks(id) {
          if (id.includes("node_modules/@mantine") || id.includes("node_modules/@floating-ui")) return "mantine";
          if (id.includes("node_modules/react") || id.includes("node_modules/scheduler")) return "react";
          if (id.includes("node_modules/@tanstack")) return "grid";
          return undefined;
        },
      },
    },
  },
  server: {
    // `npm run dev` proxies the APIs to a server started with `cargo run`.
    proxy: {
      "/platform": "http://127.0.0.1:8080",
      "/p/": "http://127.0.0.1:8080",
    },
  },
});
