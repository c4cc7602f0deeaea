// Entry point: theme (light/dark follows the system, switchable), the router
// and the session gate. Every page but sign-in and the project list is
// loaded on demand (route splitting), so the first load stays small.
import "@mantine/core/styles.css";
import "@mantine/notifications/styles.css";
import "./app.css";

import { createRoot } from "react-dom/client";
import { StrictMode } from "react";
import { MantineProvider, createTheme } from "@mantine/core";
import { Notifications } from "@mantine/notifications";
import { App } from "./App";

const theme = createTheme({
  primaryColor: "teal",
  // Darker shades than the default 6, so white text on filled buttons meets WCAG AA.
  primaryShade: { light: 9, dark: 8 },
  fontFamilyMonospace: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
});

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <MantineProvider theme={theme} defaultColorScheme="auto">
        <Notifications position="top-right" />
        <App />
      </MantineProvider>
    </StrictMode>,
  );
}
