// AI gateway (`/admin/v1/ai/…`, admin token): upstream providers (the API
// key and header values are write-only: the server only says whether a key
// is stored), settings (anon access, model allowlist, aliases, quotas) and
// usage grouped by model, user or day, with bars drawn in CSS (no chart
// library in the bundle).
import { useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Box,
  Button,
  Checkbox,
  Code,
  Group,
  NumberInput,
  ScrollArea,
  SegmentedControl,
  SimpleGrid,
  Stack,
  Switch,
  Table,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { errorText } from "../api/client";
import type { AiSettings, ProviderView, UsageReport } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal, useLoad, type Column } from "../components/data";

function parseHeaders(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function ProviderForm({ initial, onClose, onDone }: { initial?: ProviderView; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [name, setName] = useState(initial?.name ?? "");
  const [baseUrl, setBaseUrl] = useState(initial?.base_url ?? "");
  const [key, setKey] = useState("");
  const [removeKey, setRemoveKey] = useState(false);
  const [headers, setHeaders] = useState("");
  const [priority, setPriority] = useState<number | string>(initial?.priority ?? 100);
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  async function submit() {
    const body: Record<string, unknown> = { base_url: baseUrl, priority: Number(priority), enabled };
    // Write-only values: sent only when typed, so editing keeps the stored ones.
    if (key) body.api_key = key;
    else if (removeKey) body.api_key = null;
    if (headers.trim()) body.headers = parseHeaders(headers);
    if (initial) {
      await api.admin(`/admin/v1/ai/providers/${encodeURIComponent(initial.name)}`, { method: "PATCH", body });
    } else {
      await api.admin("/admin/v1/ai/providers", { method: "POST", body: { ...body, name } });
    }
    notifyOk(initial ? "Provider saved" : `Provider ${name} added`);
    onDone();
  }
  return (
    <FormModal title={initial ? `Edit provider ${initial.name}` : "New provider"} submitLabel={initial ? "Save provider" : "Add provider"} onClose={onClose} onSubmit={submit}>
      {!initial && <TextInput label="Name" description="a-z, 0-9, - and _" required value={name} onChange={(e) => setName(e.currentTarget.value)} data-autofocus />}
      <TextInput label="Base URL" description="OpenAI-compatible API, e.g. https://api.openai.com/v1" required value={baseUrl} onChange={(e) => setBaseUrl(e.currentTarget.value)} />
      <TextInput
        label="API key"
        type="password"
        autoComplete="off"
        description={initial?.has_api_key ? "A key is stored; type a new one to replace it (it is never shown)." : "Write-only: it is never shown again."}
        value={key}
        onChange={(e) => setKey(e.currentTarget.value)}
      />
      {initial?.has_api_key && <Checkbox label="Remove the stored key" checked={removeKey} disabled={!!key} onChange={(e) => setRemoveKey(e.currentTarget.checked)} />}
      <Textarea
        label="Extra headers"
        description={`One "Name: value" per line (write-only${initial?.header_names.length ? `; replaces ${initial.header_names.join(", ")}` : ""})`}
        autosize
        minRows={2}
        value={headers}
        onChange={(e) => setHeaders(e.currentTarget.value)}
      />
      <NumberInput label="Priority" description="Lower is tried first" value={priority} onChange={setPriority} />
      <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
    </FormModal>
  );
}

function Providers() {
  const api = useProject();
  const { data: providers, error, reload: load } = useLoad(() => api.admin<ProviderView[]>("/admin/v1/ai/providers"), [], [api.ref]);
  const [editing, setEditing] = useState<ProviderView | "new" | null>(null);
  const [deleting, setDeleting] = useState<ProviderView | null>(null);
  const columns: Column<ProviderView>[] = [
    { header: "Name", cell: (p) => p.name },
    { header: "Base URL", cell: (p) => <Code>{p.base_url}</Code> },
    { header: "Key", cell: (p) => (p.has_api_key ? <Badge variant="light" color="teal">stored</Badge> : <Badge variant="light" color="gray">none</Badge>) },
    { header: "Headers", cell: (p) => p.header_names.join(", ") },
    { header: "Priority", cell: (p) => p.priority },
    { header: "State", cell: (p) => <Badge variant="light" color={p.enabled ? "teal" : "gray"}>{p.enabled ? "enabled" : "disabled"}</Badge> },
    {
      header: "Actions",
      hidden: true,
      cell: (p) => (
        <Group gap={4} wrap="nowrap">
          <Button size="xs" variant="subtle" aria-label={`Edit provider ${p.name}`} onClick={() => setEditing(p)}>Edit</Button>
          <Button size="xs" variant="subtle" color="red" aria-label={`Delete provider ${p.name}`} onClick={() => setDeleting(p)}>Delete</Button>
        </Group>
      ),
    },
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">Providers</Title>
        <Button size="xs" onClick={() => setEditing("new")}>New provider</Button>
      </Group>
      <DataTable
        label="Providers"
        columns={columns}
        rows={providers}
        rowKey={(p) => p.name}
        error={error}
        empty="No providers of its own: the project uses the platform default, if allowed below."
      />
      {editing && <ProviderForm initial={editing === "new" ? undefined : editing} onClose={() => setEditing(null)} onDone={load} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete provider"
          word={deleting.name}
          what={`${deleting.name} and its stored key are deleted.`}
          onConfirm={async () => {
            await api.admin(`/admin/v1/ai/providers/${encodeURIComponent(deleting.name)}`, { method: "DELETE" });
            notifyOk("Provider deleted");
            load();
          }}
        />
      )}
    </Stack>
  );
}

function aliasText(a: Record<string, string>): string {
  return Object.entries(a)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
}

function SettingsForm() {
  const api = useProject();
  const [s, setS] = useState<AiSettings | null>(null);
  const [models, setModels] = useState("");
  const [aliases, setAliases] = useState("");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api
      .admin<AiSettings>("/admin/v1/ai/settings")
      .then((v) => {
        setS(v);
        setModels(v.models.join("\n"));
        setAliases(aliasText(v.aliases as Record<string, string>));
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  if (error) return <Alert color="red">{error}</Alert>;
  if (!s) return null;
  const num = (k: keyof AiSettings, label: string) => (
    <NumberInput label={label} description="0 = unlimited" min={0} value={s[k] as number} onChange={(v) => setS({ ...s, [k]: Number(v) || 0 })} />
  );
  async function save() {
    if (!s) return;
    const aliasMap: Record<string, string> = {};
    for (const line of aliases.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) aliasMap[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const body = { ...s, models: models.split(/[\s,]+/).filter(Boolean), aliases: aliasMap };
    try {
      const saved = await api.admin<AiSettings>("/admin/v1/ai/settings", { method: "PUT", body });
      setS(saved);
      notifyOk("AI settings saved");
    } catch (e) {
      notifyError(e);
    }
  }
  return (
    <Stack>
      <Title order={2} size="h3">Settings</Title>
      <Group>
        <Switch label="Allow the anon key" checked={s.allow_anon} onChange={(e) => setS({ ...s, allow_anon: e.currentTarget.checked })} />
        <Switch label="Fall back to the platform default provider" checked={s.use_platform_default} onChange={(e) => setS({ ...s, use_platform_default: e.currentTarget.checked })} />
      </Group>
      <SimpleGrid cols={{ base: 1, sm: 2 }}>
        <Textarea label="Allowed models" description="One per line; empty = any model" autosize minRows={3} value={models} onChange={(e) => setModels(e.currentTarget.value)} />
        <Textarea label="Aliases" description="alias = model, one per line" autosize minRows={3} value={aliases} onChange={(e) => setAliases(e.currentTarget.value)} />
        {num("project_requests_per_minute", "Project requests per minute")}
        {num("project_tokens_per_day", "Project tokens per day")}
        {num("user_requests_per_minute", "Requests per minute per user")}
        {num("user_tokens_per_day", "Tokens per day per user")}
      </SimpleGrid>
      <Group>
        <Button onClick={save}>Save settings</Button>
      </Group>
    </Stack>
  );
}

function Usage() {
  const api = useProject();
  const [groupBy, setGroupBy] = useState("model");
  const [days, setDays] = useState("30");
  const [report, setReport] = useState<UsageReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const from = new Date(Date.now() - Number(days) * 86_400_000).toISOString();
    api
      .admin<UsageReport>(`/admin/v1/ai/usage?group_by=${groupBy}&from=${encodeURIComponent(from)}`)
      .then((r) => {
        setReport(r);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref, groupBy, days]);
  const max = Math.max(1, ...(report?.groups ?? []).map((g) => g.total_tokens));
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">Usage</Title>
        <Group gap="xs">
          <SegmentedControl size="xs" aria-label="Group usage by" value={groupBy} onChange={setGroupBy} data={[{ value: "model", label: "Model" }, { value: "user", label: "User" }, { value: "day", label: "Day" }]} />
          <SegmentedControl size="xs" aria-label="Period" value={days} onChange={setDays} data={[{ value: "1", label: "24 h" }, { value: "7", label: "7 days" }, { value: "30", label: "30 days" }]} />
        </Group>
      </Group>
      {error && <Alert color="red">{error}</Alert>}
      {report && (
        <Text size="sm" data-testid="ai-usage-totals">
          {report.totals.requests} requests, {report.totals.total_tokens.toLocaleString()} tokens ({report.totals.prompt_tokens.toLocaleString()} prompt, {report.totals.completion_tokens.toLocaleString()} completion), {report.totals.errors} errors
        </Text>
      )}
      <ScrollArea type="auto">
        <Table aria-label="Usage">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>{groupBy === "day" ? "Day" : groupBy === "user" ? "User" : "Model"}</Table.Th>
              <Table.Th>Requests</Table.Th>
              <Table.Th>Tokens</Table.Th>
              <Table.Th>Errors</Table.Th>
              <Table.Th>Avg latency</Table.Th>
              <Table.Th w="30%"><span className="visually-hidden">Tokens bar</span></Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {(report?.groups ?? []).map((g) => (
              <Table.Tr key={g.key}>
                <Table.Td><Code>{g.key}</Code></Table.Td>
                <Table.Td>{g.requests}</Table.Td>
                <Table.Td>{g.total_tokens.toLocaleString()}{g.estimated_requests > 0 && " (some estimated)"}</Table.Td>
                <Table.Td>{g.errors}</Table.Td>
                <Table.Td>{Math.round(g.avg_latency_ms)} ms</Table.Td>
                <Table.Td>
                  <Box aria-hidden h={10} bg="blue" style={{ width: `${(100 * g.total_tokens) / max}%`, borderRadius: 4 }} />
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
      {report && report.groups.length === 0 && <Text c="dimmed" size="sm">No AI calls in this period.</Text>}
    </Stack>
  );
}

export default function AiPage() {
  return (
    <Stack gap="xl">
      <Providers />
      <SettingsForm />
      <Usage />
    </Stack>
  );
}
