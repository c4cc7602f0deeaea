// Edge functions (`/admin/v1/functions`, admin token): list, deploy code
// from an editor, versions (activate = rollback), settings, invocations and
// logs, a small invoke console, cron schedules with their run history, and
// the project's secrets (names only: values are write-only, the server
// never returns them).
import { useCallback, useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Code,
  Flex,
  Group,
  NavLink,
  NumberInput,
  Stack,
  Switch,
  Tabs,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { useNavigate, useParams } from "react-router";
import { errorText } from "../api/client";
import type { FunctionInfo, FunctionLogEntry, InvocationEntry, ScheduleInfo, ScheduleRun, SecretInfo, VersionInfo } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal, useLoad, when, type Column } from "../components/data";

const STARTER = `Deno.serve(async (req) => {
  const { name = "world" } = await req.json().catch(() => ({}));
  return Response.json({ message: \`Hello \${name}!\` });
});
`;

function Editor({ fn, slug, onDeployed }: { fn: FunctionInfo | null; slug: string; onDeployed: (f: FunctionInfo) => void }) {
  const api = useProject();
  const [code, setCode] = useState<string | null>(fn ? null : STARTER);
  const [entry, setEntry] = useState("index.ts");
  const [files, setFiles] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!fn?.active_version) {
      setCode(STARTER);
      return;
    }
    api
      .admin<VersionInfo>(`/admin/v1/functions/${slug}/versions/${fn.active_version}`)
      .then((v) => {
        const f = (v.files ?? {}) as Record<string, string>;
        setFiles(f);
        setEntry(v.entrypoint);
        setCode(f[v.entrypoint] ?? "");
      })
      .catch((e) => setError(errorText(e)));
  }, [slug, fn?.active_version]);
  async function deploy() {
    setBusy(true);
    setError(null);
    try {
      const body = { files: { ...files, [entry]: code ?? "" }, entrypoint: entry };
      const f = await api.admin<FunctionInfo>(`/admin/v1/functions/${encodeURIComponent(slug)}`, { method: "PUT", body });
      notifyOk(`Deployed ${slug} version ${f.active_version}`);
      onDeployed(f);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Stack>
      {error && <Alert color="red" title="Deploy failed">{error}</Alert>}
      {Object.keys(files).length > 1 && <Text size="sm" c="dimmed">Editing {entry}; the other files of the version ({Object.keys(files).filter((f) => f !== entry).join(", ")}) are deployed unchanged.</Text>}
      <Textarea
        label={`Code (${entry})`}
        autosize
        minRows={12}
        maxRows={30}
        value={code ?? ""}
        onChange={(e) => setCode(e.currentTarget.value)}
        styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }}
        spellCheck={false}
      />
      <Group justify="flex-end">
        <Button onClick={deploy} loading={busy} disabled={code === null}>Deploy</Button>
      </Group>
    </Stack>
  );
}

function Versions({ fn, reload }: { fn: FunctionInfo; reload: () => void }) {
  const api = useProject();
  const activate = async (v: VersionInfo) => {
    try {
      await api.admin(`/admin/v1/functions/${fn.slug}/versions/${v.version}/activate`, { method: "POST" });
      notifyOk(`Version ${v.version} is active`);
      reload();
    } catch (e) {
      notifyError(e);
    }
  };
  const columns: Column<VersionInfo>[] = [
    { header: "Version", cell: (v) => <>{v.version} {v.active && <Badge variant="light" color="teal" size="sm">active</Badge>}</> },
    { header: "Deployed", cell: (v) => when(v.created_at) },
    { header: "By", cell: (v) => v.created_by },
    { header: "Size", cell: (v) => `${v.size_bytes} B` },
    { header: "Checksum", cell: (v) => <Code>{v.checksum.slice(0, 12)}</Code> },
    {
      header: "Actions",
      hidden: true,
      cell: (v) =>
        !v.active && (
          <Button size="xs" variant="light" aria-label={`Activate version ${v.version}`} onClick={() => activate(v)}>
            {fn.active_version !== null && fn.active_version !== undefined && v.version < fn.active_version ? "Roll back" : "Activate"}
          </Button>
        ),
    },
  ];
  return <DataTable label="Versions" columns={columns} rows={fn.versions ?? []} rowKey={(v) => v.version} />;
}

function SettingsForm({ fn, reload }: { fn: FunctionInfo; reload: () => void }) {
  const api = useProject();
  const [verify, setVerify] = useState(fn.verify_jwt);
  const [timeout, setTimeoutMs] = useState<number | string>(fn.timeout_ms);
  const [memory, setMemory] = useState<number | string>(fn.memory_mb);
  const [concurrency, setConcurrency] = useState<number | string>(fn.concurrency);
  return (
    <Stack maw={420}>
      <Switch label="Require a valid key or token (verify JWT)" checked={verify} onChange={(e) => setVerify(e.currentTarget.checked)} />
      <NumberInput label="Timeout (ms)" min={100} max={900000} value={timeout} onChange={setTimeoutMs} />
      <NumberInput label="Memory (MiB)" min={16} max={4096} value={memory} onChange={setMemory} />
      <NumberInput label="Concurrency" min={1} max={10000} value={concurrency} onChange={setConcurrency} />
      <Group>
        <Button
          onClick={async () => {
            try {
              await api.admin(`/admin/v1/functions/${fn.slug}`, {
                method: "PUT",
                body: { verify_jwt: verify, timeout_ms: Number(timeout), memory_mb: Number(memory), concurrency: Number(concurrency) },
              });
              notifyOk("Settings saved");
              reload();
            } catch (e) {
              notifyError(e);
            }
          }}
        >
          Save settings
        </Button>
      </Group>
    </Stack>
  );
}

function Logs({ slug }: { slug: string }) {
  const api = useProject();
  const [invocations, setInvocations] = useState<InvocationEntry[]>([]);
  const [logs, setLogs] = useState<FunctionLogEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    Promise.all([
      api.admin<InvocationEntry[]>(`/admin/v1/functions/${slug}/invocations?limit=50`),
      api.admin<FunctionLogEntry[]>(`/admin/v1/functions/${slug}/logs?limit=200`),
    ])
      .then(([i, l]) => {
        setInvocations(i);
        setLogs(l);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref, slug]);
  useEffect(load, [load]);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={3} size="h5">Invocations</Title>
        <Button size="xs" variant="default" onClick={load}>Refresh</Button>
      </Group>
      <DataTable
        label="Invocations"
        columns={[
          { header: "Started", cell: (i) => when(i.started_at) },
          { header: "Trigger", cell: (i) => i.trigger },
          { header: "Request", cell: (i) => <Code>{i.method} {i.path}</Code> },
          {
            header: "Status",
            cell: (i) => (
              <>
                <Badge variant="light" color={i.status >= 400 ? "red" : "teal"}>{i.status}</Badge> {i.error && <Text span size="xs">{i.error}</Text>}
              </>
            ),
          },
          { header: "Duration", cell: (i) => `${i.duration_ms} ms` },
          { header: "Version", cell: (i) => i.version ?? "" },
        ]}
        rows={invocations}
        rowKey={(i) => i.id}
        error={error}
        empty="No invocations yet."
      />
      <Title order={3} size="h5">Logs</Title>
      <Code block style={{ maxHeight: 320, overflow: "auto" }} aria-label="Function logs">
        {logs.length === 0 ? "No log lines yet." : logs.map((l) => `${l.at} ${l.level.padEnd(5)} ${l.message}`).join("\n")}
      </Code>
    </Stack>
  );
}

function Invoke({ slug }: { slug: string }) {
  const api = useProject();
  const [body, setBody] = useState('{"name": "Ferrobase"}');
  const [answer, setAnswer] = useState<string | null>(null);
  return (
    <Stack>
      <Textarea label="Request body (JSON)" autosize minRows={3} value={body} onChange={(e) => setBody(e.currentTarget.value)} styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} />
      <Group>
        <Button
          variant="light"
          onClick={async () => {
            try {
              const resp = await api.service<Response>(`/functions/v1/${slug}`, {
                method: "POST",
                body,
                headers: { "content-type": "application/json" },
                raw: true,
              });
              setAnswer(`${resp.status}\n${await resp.text()}`);
            } catch (e) {
              setAnswer(errorText(e));
            }
          }}
        >
          Invoke (service role)
        </Button>
      </Group>
      {answer !== null && <Code block aria-label="Invocation answer">{answer}</Code>}
    </Stack>
  );
}

function ScheduleForm({ slug, onClose, onDone }: { slug: string; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [name, setName] = useState("");
  const [cron, setCron] = useState("*/5 * * * *");
  const [body, setBody] = useState("{}");
  const [enabled, setEnabled] = useState(true);
  return (
    <FormModal
      title="New schedule"
      submitLabel="Create schedule"
      onClose={onClose}
      onSubmit={async () => {
        let parsed: unknown;
        try {
          parsed = body.trim() ? JSON.parse(body) : null;
        } catch {
          throw new Error("The body is not valid JSON.");
        }
        await api.admin(`/admin/v1/functions/${slug}/schedules`, { method: "POST", body: { name, cron, body: parsed, enabled } });
        notifyOk(`Schedule ${name} created`);
        onDone();
      }}
    >
      <TextInput label="Schedule name" description="a-z, 0-9, - and _" required value={name} onChange={(e) => setName(e.currentTarget.value)} data-autofocus />
      <TextInput label="Cron" description="5 fields (minutes) or 6 (with seconds), UTC" required value={cron} onChange={(e) => setCron(e.currentTarget.value)} />
      <Textarea label="Body (JSON)" autosize minRows={2} value={body} onChange={(e) => setBody(e.currentTarget.value)} styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} />
      <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
    </FormModal>
  );
}

function runFailed(r: ScheduleRun): boolean {
  return !!r.error || (r.status !== null && r.status !== undefined && r.status >= 400);
}

function Runs({ slug, name }: { slug: string; name: string }) {
  const api = useProject();
  const { data: runs, error, reload } = useLoad(
    () => api.admin<ScheduleRun[]>(`/admin/v1/functions/${slug}/schedules/${encodeURIComponent(name)}/runs`),
    [],
    [api.ref, slug, name],
  );
  const failures = runs.filter(runFailed).length;
  const columns: Column<ScheduleRun>[] = [
    { header: "Tick", cell: (r) => when(r.tick_at) },
    {
      header: "Result",
      cell: (r) =>
        r.finished_at === null || r.finished_at === undefined ? (
          <Badge variant="light" color="gray">running</Badge>
        ) : (
          <>
            <Badge variant="light" color={runFailed(r) ? "red" : "teal"}>{r.status ?? "failed"}</Badge> {r.error && <Text span size="xs">{r.error}</Text>}
          </>
        ),
    },
    { header: "Duration", cell: (r) => (r.finished_at ? `${Math.max(0, new Date(r.finished_at).getTime() - new Date(r.started_at).getTime())} ms` : "") },
    { header: "Node", cell: (r) => r.node },
    { header: "Invocation", cell: (r) => (r.invocation_id ? <Code>{r.invocation_id.slice(0, 8)}</Code> : "") },
  ];
  return (
    <Stack gap="xs">
      <Group justify="space-between">
        <Title order={4} size="h6">Runs of {name}{failures > 0 ? ` (${failures} failed)` : ""}</Title>
        <Button size="xs" variant="default" onClick={reload}>Refresh runs</Button>
      </Group>
      <DataTable label={`Runs of ${name}`} columns={columns} rows={runs} rowKey={(r) => r.tick_at} error={error} empty="No run yet." />
    </Stack>
  );
}

function Schedules({ slug }: { slug: string }) {
  const api = useProject();
  const { data: schedules, error, reload } = useLoad(() => api.admin<ScheduleInfo[]>(`/admin/v1/functions/${slug}/schedules`), [], [api.ref, slug]);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [showing, setShowing] = useState<string | null>(null);
  const setEnabled = async (s: ScheduleInfo, enabled: boolean) => {
    try {
      await api.admin(`/admin/v1/functions/${slug}/schedules/${encodeURIComponent(s.name)}`, { method: "PUT", body: { cron: s.cron, body: s.body, enabled } });
      reload();
    } catch (e) {
      notifyError(e);
    }
  };
  const columns: Column<ScheduleInfo>[] = [
    { header: "Name", cell: (s) => s.name },
    { header: "Cron", cell: (s) => <Code>{s.cron}</Code> },
    { header: "Enabled", cell: (s) => <Switch aria-label={`Enable schedule ${s.name}`} checked={s.enabled} onChange={(e) => setEnabled(s, e.currentTarget.checked)} /> },
    { header: "Next run", cell: (s) => (s.enabled ? when(s.next_run_at) : "paused") },
    { header: "Body", cell: (s) => <Code>{JSON.stringify(s.body ?? null)}</Code> },
    {
      header: "Actions",
      hidden: true,
      cell: (s) => (
        <Group gap={4} wrap="nowrap">
          <Button size="xs" variant="subtle" aria-label={`Runs of schedule ${s.name}`} onClick={() => setShowing(s.name)}>Runs</Button>
          <Button size="xs" variant="subtle" color="red" aria-label={`Delete schedule ${s.name}`} onClick={() => setDeleting(s.name)}>Delete</Button>
        </Group>
      ),
    },
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Text size="sm" c="dimmed">Each tick invokes the function once across all nodes (POST with the body, as the service role).</Text>
        <Button size="xs" onClick={() => setCreating(true)}>New schedule</Button>
      </Group>
      <DataTable label="Schedules" columns={columns} rows={schedules} rowKey={(s) => s.name} error={error} empty="No schedules." />
      {showing && <Runs key={showing} slug={slug} name={showing} />}
      {creating && <ScheduleForm slug={slug} onClose={() => setCreating(false)} onDone={reload} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete schedule"
          word={deleting}
          what={`The schedule ${deleting} and its run history are deleted.`}
          onConfirm={async () => {
            await api.admin(`/admin/v1/functions/${slug}/schedules/${encodeURIComponent(deleting)}`, { method: "DELETE" });
            notifyOk("Schedule deleted");
            if (showing === deleting) setShowing(null);
            reload();
          }}
        />
      )}
    </Stack>
  );
}

function FunctionView({ slug, fresh, reloadList }: { slug: string; fresh: boolean; reloadList: () => void }) {
  const api = useProject();
  const navigate = useNavigate();
  const [fn, setFn] = useState<FunctionInfo | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const load = useCallback(() => {
    if (fresh) return;
    api
      .admin<FunctionInfo>(`/admin/v1/functions/${slug}`)
      .then(setFn)
      .catch((e) => setError(errorText(e)));
  }, [api.ref, slug, fresh]);
  useEffect(load, [load]);
  if (error) return <Alert color="red">{error}</Alert>;
  if (!fn && !fresh) return <Text c="dimmed">Loading…</Text>;
  return (
    <Stack>
      <Group justify="space-between">
        <Group gap="xs">
          <Title order={2} size="h3">{slug}</Title>
          {fn?.active_version ? <Badge variant="light" color="teal">version {fn.active_version}</Badge> : <Badge variant="light" color="gray">not deployed</Badge>}
        </Group>
        {fn && <Button size="xs" variant="light" color="red" onClick={() => setDeleting(true)}>Delete function</Button>}
      </Group>
      <Tabs defaultValue="code" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="code">Code</Tabs.Tab>
          {fn && <Tabs.Tab value="versions">Versions</Tabs.Tab>}
          {fn && <Tabs.Tab value="settings">Settings</Tabs.Tab>}
          {fn && <Tabs.Tab value="logs">Logs</Tabs.Tab>}
          {fn && <Tabs.Tab value="invoke">Invoke</Tabs.Tab>}
          {fn && <Tabs.Tab value="schedules">Schedules</Tabs.Tab>}
        </Tabs.List>
        <Tabs.Panel value="code" pt="md">
          <Editor
            fn={fn}
            slug={slug}
            onDeployed={(f) => {
              reloadList();
              if (fresh) navigate(`/projects/${api.ref}/functions/${f.slug}`);
              else load();
            }}
          />
        </Tabs.Panel>
        {fn && (
          <>
            <Tabs.Panel value="versions" pt="md"><Versions fn={fn} reload={load} /></Tabs.Panel>
            <Tabs.Panel value="settings" pt="md"><SettingsForm key={fn.updated_at} fn={fn} reload={load} /></Tabs.Panel>
            <Tabs.Panel value="logs" pt="md"><Logs slug={slug} /></Tabs.Panel>
            <Tabs.Panel value="invoke" pt="md"><Invoke slug={slug} /></Tabs.Panel>
            <Tabs.Panel value="schedules" pt="md"><Schedules slug={slug} /></Tabs.Panel>
          </>
        )}
      </Tabs>
      <ConfirmDelete
        opened={deleting}
        onClose={() => setDeleting(false)}
        title={`Delete function ${slug}`}
        word={slug}
        what="The function, its versions and schedules are deleted."
        onConfirm={async () => {
          await api.admin(`/admin/v1/functions/${slug}`, { method: "DELETE" });
          notifyOk("Function deleted");
          reloadList();
          navigate(`/projects/${api.ref}/functions`);
        }}
      />
    </Stack>
  );
}

function Secrets() {
  const api = useProject();
  const { data: secrets, error, reload, setData: setSecrets } = useLoad(
    () => api.admin<SecretInfo[]>("/admin/v1/functions/secrets"),
    [] as SecretInfo[],
    [api.ref],
  );
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [deleting, setDeleting] = useState<string | null>(null);
  return (
    <Stack>
      <Title order={2} size="h3">Secrets</Title>
      <Text size="sm" c="dimmed">Environment variables of every function of the project. Values are write-only: set a name again to change it.</Text>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            setSecrets(await api.admin<SecretInfo[]>("/admin/v1/functions/secrets", { method: "POST", body: [{ name, value }] }));
            setName("");
            setValue("");
            notifyOk(`Secret ${name} set`);
            reload();
          } catch (err) {
            notifyError(err);
          }
        }}
      >
        <Group align="flex-end">
          <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <TextInput label="Value" type="password" required autoComplete="off" value={value} onChange={(e) => setValue(e.currentTarget.value)} />
          <Button type="submit">Set secret</Button>
        </Group>
      </form>
      <DataTable
        label="Secrets"
        columns={[
          { header: "Name", cell: (s) => <Code>{s.name}</Code> },
          { header: "Digest", cell: (s) => <Code>{s.digest}</Code> },
          { header: "Updated", cell: (s) => when(s.updated_at) },
          {
            header: "Actions",
            hidden: true,
            cell: (s) => (
              <Button size="xs" variant="light" color="red" aria-label={`Delete secret ${s.name}`} onClick={() => setDeleting(s.name)}>Delete</Button>
            ),
          },
        ]}
        rows={secrets}
        rowKey={(s) => s.name}
        error={error}
        empty="No secrets."
      />
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete secret"
          word={deleting}
          what={`Functions no longer see ${deleting}.`}
          onConfirm={async () => {
            await api.admin(`/admin/v1/functions/secrets/${encodeURIComponent(deleting)}`, { method: "DELETE" });
            notifyOk("Secret deleted");
            reload();
          }}
        />
      )}
    </Stack>
  );
}

function NewFunction({ onClose }: { onClose: () => void }) {
  const api = useProject();
  const navigate = useNavigate();
  const [slug, setSlug] = useState("");
  return (
    <FormModal
      title="New function"
      submitLabel="Open editor"
      onClose={onClose}
      onSubmit={async () => navigate(`/projects/${api.ref}/functions/new/${encodeURIComponent(slug)}`)}
    >
      <TextInput label="Slug" description="Letters, digits, - and _ (the URL is /functions/v1/<slug>)" required value={slug} onChange={(e) => setSlug(e.currentTarget.value)} data-autofocus />
    </FormModal>
  );
}

export default function FunctionsPage() {
  const api = useProject();
  const params = useParams();
  const navigate = useNavigate();
  const [fns, setFns] = useState<FunctionInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const load = useCallback(() => {
    api
      .admin<FunctionInfo[]>("/admin/v1/functions")
      .then((f) => {
        setFns(f);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  useEffect(load, [load]);
  const showSecrets = params.slug === undefined && params.newSlug === undefined;
  return (
    <Flex direction={{ base: "column", md: "row" }} gap="md" align={{ base: "stretch", md: "flex-start" }}>
      <Stack w={{ base: "100%", md: 200 }} gap={4} style={{ flexShrink: 0 }} component="nav" aria-label="Functions">
        <Button size="xs" onClick={() => setCreating(true)}>New function</Button>
        {error && <Text c="red" size="sm">{error}</Text>}
        <NavLink component="button" label="Secrets" active={showSecrets} onClick={() => navigate(`/projects/${api.ref}/functions`)} />
        {fns?.map((f) => (
          <NavLink
            component="button"
            key={f.slug}
            label={f.slug}
            description={f.active_version ? `version ${f.active_version}` : "not deployed"}
            active={f.slug === params.slug}
            onClick={() => navigate(`/projects/${api.ref}/functions/${f.slug}`)}
          />
        ))}
        {fns?.length === 0 && <Text size="sm" c="dimmed">No functions yet.</Text>}
      </Stack>
      <div style={{ flex: 1, minWidth: 0 }}>
        {params.newSlug ? (
          <FunctionView key={`new-${params.newSlug}`} slug={params.newSlug} fresh reloadList={load} />
        ) : params.slug ? (
          <FunctionView key={params.slug} slug={params.slug} fresh={false} reloadList={load} />
        ) : (
          <Secrets />
        )}
      </div>
      {creating && <NewFunction onClose={() => setCreating(false)} />}
    </Flex>
  );
}
