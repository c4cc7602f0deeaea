// The signed-in frame: header (home, colour scheme, sign out) and, inside a
// project, the navigation between its pages. Collapses to a burger menu on
// narrow windows.
import type { ReactNode } from "react";
import { AppShell, Burger, Button, Group, NavLink, Text, Title, useMantineColorScheme, ActionIcon, Tooltip } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { Link, useLocation, useMatch } from "react-router";
import { sessionStore } from "../api/client";

const pages: { path: string; label: string }[] = [
  { path: "tables", label: "Table editor" },
  { path: "sql", label: "SQL editor" },
  { path: "schema", label: "Schema" },
  { path: "auth", label: "Auth users" },
  { path: "auth-settings", label: "Auth settings" },
  { path: "storage", label: "Storage" },
  { path: "realtime", label: "Realtime" },
  { path: "webhooks", label: "Webhooks" },
  { path: "functions", label: "Edge functions" },
  { path: "ai", label: "AI" },
  { path: "settings", label: "Settings" },
];

function ColorSchemeToggle() {
  const { colorScheme, setColorScheme } = useMantineColorScheme();
  const dark = colorScheme === "dark";
  return (
    <Tooltip label={dark ? "Light mode" : "Dark mode"}>
      <ActionIcon variant="default" size="lg" aria-label="Toggle colour scheme" onClick={() => setColorScheme(dark ? "light" : "dark")}>
        <span aria-hidden>{dark ? "☀" : "☾"}</span>
      </ActionIcon>
    </Tooltip>
  );
}

export function Shell({ children }: { children: ReactNode }) {
  const [opened, { toggle, close }] = useDisclosure();
  const match = useMatch("/projects/:ref/*");
  const location = useLocation();
  const ref = match?.params.ref;
  const session = sessionStore.get();
  return (
    <AppShell
      header={{ height: 56 }}
      navbar={ref ? { width: 220, breakpoint: "sm", collapsed: { mobile: !opened } } : undefined}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group wrap="nowrap">
            {ref && <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Navigation" />}
            <Title order={1} size="h4">
              <Link to="/" style={{ color: "inherit", textDecoration: "none" }}>Ferrobase</Link>
            </Title>
            {ref && <Text c="dimmed" visibleFrom="xs">/ {ref}</Text>}
          </Group>
          <Group wrap="nowrap">
            <Button component={Link} to={ref ? `/logs?project=${encodeURIComponent(ref)}` : "/logs"} variant="subtle">Logs</Button>
            <Text size="sm" c="dimmed" visibleFrom="sm">{session?.email}</Text>
            <ColorSchemeToggle />
            <Button variant="default" onClick={() => sessionStore.set(null)}>Sign out</Button>
          </Group>
        </Group>
      </AppShell.Header>
      {ref && (
        <AppShell.Navbar p="xs" aria-label="Project">
          {pages.map((p) => {
            const to = `/projects/${ref}/${p.path}`;
            return (
              <NavLink
                key={p.path}
                component={Link}
                to={to}
                label={p.label}
                onClick={close}
                active={location.pathname.includes(`/projects/${ref}/${p.path}`)}
              />
            );
          })}
        </AppShell.Navbar>
      )}
      <AppShell.Main>{children}</AppShell.Main>
    </AppShell>
  );
}
