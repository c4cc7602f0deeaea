// Routes and the signed-in shell (header, project navigation).
import { Suspense, lazy, useSyncExternalStore } from "react";
import { BrowserRouter, Navigate, Route, Routes, useParams } from "react-router";
import { Center, Loader } from "@mantine/core";
import { apiRoot, sessionStore } from "./api/client";
import { SignIn } from "./pages/SignIn";
import { Shell } from "./components/Shell";
import { ErrorBoundary } from "./components/ErrorBoundary";
import { Projects } from "./pages/Projects";
import { ProjectProvider } from "./project";

const TableEditor = lazy(() => import("./pages/TableEditor"));
const SqlEditor = lazy(() => import("./pages/SqlEditor"));
const SchemaPage = lazy(() => import("./pages/Schema"));
const AuthUsers = lazy(() => import("./pages/AuthUsers"));
const StoragePage = lazy(() => import("./pages/Storage"));
const Settings = lazy(() => import("./pages/Settings"));
const WebhooksPage = lazy(() => import("./pages/Webhooks"));
const FunctionsPage = lazy(() => import("./pages/Functions"));
const RealtimePage = lazy(() => import("./pages/Realtime"));
const AiPage = lazy(() => import("./pages/Ai"));
const AuthSettingsPage = lazy(() => import("./pages/AuthSettings"));
const LogsPage = lazy(() => import("./pages/Logs"));

function Loading() {
  return (
    <Center h={200}>
      <Loader aria-label="Loading" />
    </Center>
  );
}

function ProjectRoutes() {
  const { ref = "" } = useParams();
  return (
    <ProjectProvider projectRef={ref}>
      <ErrorBoundary>
      <Suspense fallback={<Loading />}>
        <Routes>
          <Route index element={<Navigate to="tables" replace />} />
          <Route path="tables" element={<TableEditor />} />
          <Route path="tables/:schema" element={<TableEditor />} />
          <Route path="tables/:schema/:table" element={<TableEditor />} />
          <Route path="sql" element={<SqlEditor />} />
          <Route path="schema" element={<SchemaPage />} />
          <Route path="schema/:schema/:table" element={<SchemaPage />} />
          <Route path="auth" element={<AuthUsers />} />
          <Route path="auth-settings" element={<AuthSettingsPage />} />
          <Route path="storage" element={<StoragePage />} />
          <Route path="storage/:bucket" element={<StoragePage />} />
          <Route path="realtime" element={<RealtimePage />} />
          <Route path="webhooks" element={<WebhooksPage />} />
          <Route path="webhooks/:id" element={<WebhooksPage />} />
          <Route path="functions" element={<FunctionsPage />} />
          <Route path="functions/new/:newSlug" element={<FunctionsPage />} />
          <Route path="functions/:slug" element={<FunctionsPage />} />
          <Route path="ai" element={<AiPage />} />
          <Route path="settings" element={<Settings />} />
        </Routes>
      </Suspense>
      </ErrorBoundary>
    </ProjectProvider>
  );
}

export function App() {
  const session = useSyncExternalStore(sessionStore.subscribe, sessionStore.get);
  if (!session) return <SignIn />;
  return (
    <BrowserRouter basename={`${apiRoot}/dashboard`}>
      <Shell>
        <Routes>
          <Route path="/" element={<Projects />} />
          <Route path="/projects/:ref/*" element={<ProjectRoutes />} />
          <Route
            path="/logs"
            element={
              <ErrorBoundary>
                <Suspense fallback={<Loading />}>
                  <LogsPage />
                </Suspense>
              </ErrorBoundary>
            }
          />
          <Route path="*" element={<Navigate to="/" replace />} />
        </Routes>
      </Shell>
    </BrowserRouter>
  );
}
