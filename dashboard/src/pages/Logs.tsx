// Logs (platform admin token): the recent requests of the node that serves
// the dashboard (`GET /platform/v1/logs/requests`: request id, method, path
// without query string, status, latency, project; an in-memory ring per
// node) and the platform audit log (`GET /platform/v1/logs/audit`: who
// changed what). Both filter on the server and page back with a cursor.
import { useEffect, useState } from "react";
import { Badge, Button, Code, Group, Select, Stack, Switch, Tabs, TextInput, Title } from "@mantine/core";
import { useSearchParams } from "react-router";
import { request } from "../api/client";
import type { AuditEntry, RequestEntry } from "../api/types";
import { DataTable, useLoad, when, type Column } from "../components/data";

/** `params` as a query string, without empty values. */
function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && String(v).trim() !== "") q.set(k, String(v).trim());
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

function statusColor(status: number): string {
  if (status >= 500) return "red";
  if (status >= 400) return "orange";
  return "teal";
}

const PAGE = 100;

function Requests({ project: initialProject }: { project: string }) {
  const [project, setProject] = useState(initialProject);
  const [method, setMethod] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [path, setPath] = useState("");
  const [requestId, setRequestId] = useState("");
  const [live, setLive] = useState(false);
  const [older, setOlder] = useState<RequestEntry[]>([]);
  const filters = { project, method: method ?? undefined, status: status ?? undefined, path, request_id: requestId, limit: PAGE };
  const { data: rows, error, reload } = useLoad(
    () => request<RequestEntry[]>(`/platform/v1/logs/requests${query(filters)}`),
    [],
    [project, method, status, path, requestId],
  );
  useEffect(() => setOlder([]), [project, method, status, path, requestId]);
  useEffect(() => {
    if (!live) return;
    const t = setInterval(reload, 3000);
    return () => clearInterval(t);
  }, [live, reload]);
  const all = [...rows, ...older.filter((o) => !rows.some((r) => r.seq === o.seq))];
  const last = all.length ? all[all.length - 1].seq : undefined;
  const columns: Column<RequestEntry>[] = [
    { header: "Time", cell: (r) => when(r.at) },
    { header: "Method", cell: (r) => r.method },
    { header: "Path", cell: (r) => <Code style={{ wordBreak: "break-all" }}>{r.path}</Code> },
    { header: "Status", cell: (r) => <Badge variant="light" color={statusColor(r.status)}>{r.status}</Badge> },
    { header: "Latency", cell: (r) => `${r.latency_ms.toFixed(1)} ms` },
    { header: "Project", cell: (r) => r.project ?? "" },
    { header: "Request id", cell: (r) => <Code>{r.request_id}</Code> },
  ];
  return (
    <Stack>
      <Group align="flex-end">
        <TextInput label="Project" placeholder="ref" value={project} onChange={(e) => setProject(e.currentTarget.value)} w={140} />
        <Select label="Method" placeholder="any" clearable data={["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]} value={method} onChange={setMethod} w={120} />
        <Select label="Status" placeholder="any" clearable data={["2xx", "3xx", "4xx", "5xx"]} value={status} onChange={setStatus} w={110} />
        <TextInput label="Path contains" value={path} onChange={(e) => setPath(e.currentTarget.value)} />
        <TextInput label="Request id" value={requestId} onChange={(e) => setRequestId(e.currentTarget.value)} />
        <Button variant="default" onClick={reload}>Refresh</Button>
        <Switch label="Live" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} />
      </Group>
      <DataTable label="Recent requests" columns={columns} rows={all} rowKey={(r) => r.seq} error={error} empty="No request matches." />
      {all.length >= PAGE && last !== undefined && (
        <Group>
          <Button
            variant="default"
            onClick={async () => {
              const more = await request<RequestEntry[]>(`/platform/v1/logs/requests${query({ ...filters, before: last })}`);
              setOlder((o) => [...o, ...more]);
            }}
          >
            Older requests
          </Button>
        </Group>
      )}
    </Stack>
  );
}

function Audit({ project: initialProject }: { project: string }) {
  const [project, setProject] = useState(initialProject);
  const [action, setAction] = useState("");
  const [actor, setActor] = useState("");
  const [older, setOlder] = useState<AuditEntry[]>([]);
  const filters = { project, action, actor, limit: PAGE };
  const { data: rows, error, reload } = useLoad(
    () => request<AuditEntry[]>(`/platform/v1/logs/audit${query(filters)}`),
    [],
    [project, action, actor],
  );
  useEffect(() => setOlder([]), [project, action, actor]);
  const all = [...rows, ...older.filter((o) => !rows.some((r) => r.id === o.id))];
  const last = all.length ? all[all.length - 1].id : undefined;
  const columns: Column<AuditEntry>[] = [
    { header: "Time", cell: (e) => when(e.at) },
    { header: "Actor", cell: (e) => e.actor },
    { header: "Action", cell: (e) => <Code>{e.action}</Code> },
    { header: "Target", cell: (e) => e.target ?? "" },
    { header: "Details", cell: (e) => <Code style={{ wordBreak: "break-all", whiteSpace: "pre-wrap" }}>{JSON.stringify(e.details)}</Code> },
  ];
  return (
    <Stack>
      <Group align="flex-end">
        <TextInput label="Audit project" placeholder="ref" value={project} onChange={(e) => setProject(e.currentTarget.value)} w={140} />
        <TextInput label="Action starts with" placeholder="project." value={action} onChange={(e) => setAction(e.currentTarget.value)} />
        <TextInput label="Actor" placeholder="admin:you@example.com" value={actor} onChange={(e) => setActor(e.currentTarget.value)} />
        <Button variant="default" onClick={reload}>Refresh audit log</Button>
      </Group>
      <DataTable label="Audit log" columns={columns} rows={all} rowKey={(e) => e.id} error={error} empty="No audit entry matches." />
      {all.length >= PAGE && last !== undefined && (
        <Group>
          <Button
            variant="default"
            onClick={async () => {
              const more = await request<AuditEntry[]>(`/platform/v1/logs/audit${query({ ...filters, before: last })}`);
              setOlder((o) => [...o, ...more]);
            }}
          >
            Older entries
          </Button>
        </Group>
      )}
    </Stack>
  );
}

export default function LogsPage() {
  const [params] = useSearchParams();
  const project = params.get("project") ?? "";
  return (
    <Stack>
      <Title order={2}>Logs</Title>
      <Tabs defaultValue="requests" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="requests">Requests</Tabs.Tab>
          <Tabs.Tab value="audit">Audit log</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="requests" pt="md"><Requests project={project} /></Tabs.Panel>
        <Tabs.Panel value="audit" pt="md"><Audit project={project} /></Tabs.Panel>
      </Tabs>
    </Stack>
  );
}
