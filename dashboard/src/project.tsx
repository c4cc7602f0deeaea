// The project being administered: its details (with the service-role key,
// kept in memory like the admin token) and helpers that call its APIs.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { Alert, Center, Loader } from "@mantine/core";
import { errorText, request, type RequestOptions } from "./api/client";
import type { ProjectDetails } from "./api/types";

export interface ProjectApi {
  details: ProjectDetails;
  ref: string;
  /** Calls `/p/{ref}{path}` with the platform admin token (admin API). */
  admin<T>(path: string, opts?: RequestOptions): Promise<T>;
  /** Calls `/p/{ref}{path}` with the service-role key (data, auth and storage APIs). */
  service<T>(path: string, opts?: RequestOptions): Promise<T>;
  /** Replaces the details (after a settings change or a key rotation). */
  setDetails(d: ProjectDetails): void;
}

const Ctx = createContext<ProjectApi | null>(null);

export function useProject(): ProjectApi {
  const p = useContext(Ctx);
  if (!p) throw new Error("useProject outside a project");
  return p;
}

export function ProjectProvider({ projectRef, children }: { projectRef: string; children: ReactNode }) {
  const [details, setDetails] = useState<ProjectDetails | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setDetails(null);
    setError(null);
    request<ProjectDetails>(`/platform/v1/projects/${encodeURIComponent(projectRef)}`)
      .then((d) => live && setDetails(d))
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [projectRef]);
  if (error) return <Alert color="red" title="Could not open the project">{error}</Alert>;
  if (!details) {
    return (
      <Center h={200}>
        <Loader aria-label="Loading project" />
      </Center>
    );
  }
  const base = `/p/${encodeURIComponent(projectRef)}`;
  const api: ProjectApi = {
    details,
    ref: projectRef,
    admin: (path, opts) => request(base + path, opts),
    service: (path, opts) =>
      request(base + path, { ...opts, token: details.service_role_key, apikey: details.service_role_key }),
    setDetails,
  };
  return <Ctx.Provider value={api}>{children}</Ctx.Provider>;
}
