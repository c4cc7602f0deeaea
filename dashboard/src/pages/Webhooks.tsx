// Webhooks (`/admin/v1/webhooks`, admin token): endpoints (create, showing
// the signing secret once; edit URL/events/enabled; rotate the secret; delete
// with a typed confirmation) and each endpoint's delivery log (status,
// attempts with latency and response excerpt, replay one, replay the failed
// ones since a time).
import { useCallback, useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Code,
  Flex,
  Group,
  Modal,
  NavLink,
  NumberInput,
  SegmentedControl,
  Stack,
  Switch,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { useNavigate, useParams } from "react-router";
import { errorText } from "../api/client";
import type { CreatedEndpoint, Delivery, RotatedSecret, WebhookEndpoint } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, Copyable, notifyError, notifyOk } from "../components/common";
import { DataTable, type Column } from "../components/data";

function splitEvents(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((e) => e.trim())
    .filter(Boolean);
}

function when(t: string | null | undefined): string {
  return t ? new Date(t).toLocaleString() : "";
}

const statusColor: Record<string, string> = { succeeded: "teal", failed: "red", pending: "gray" };

/** The secret of a new endpoint or a rotation, shown this once. */
function SecretOnce({ title, secret, note, onClose }: { title: string; secret: string; note?: string; onClose: () => void }) {
  return (
    <Modal opened onClose={onClose} title={title} closeOnClickOutside={false}>
      <Stack>
        <Alert color="yellow">Copy the signing secret now: it is not shown again (rotate it to get a new one).</Alert>
        <Copyable label="Signing secret" value={secret} />
        {note && <Text size="sm" c="dimmed">{note}</Text>}
        <Group justify="flex-end">
          <Button onClick={onClose}>Done</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function EndpointForm({
  initial,
  onClose,
  onDone,
}: {
  initial?: WebhookEndpoint;
  onClose: () => void;
  onDone: (created?: CreatedEndpoint) => void;
}) {
  const api = useProject();
  const [url, setUrl] = useState(initial?.url ?? "");
  const [events, setEvents] = useState(initial?.events.join("\n") ?? "*");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    try {
      const body = { url, events: splitEvents(events), description, enabled };
      if (initial) {
        await api.admin(`/admin/v1/webhooks/${initial.id}`, { method: "PATCH", body });
        notifyOk("Endpoint saved");
        onDone();
      } else {
        onDone(await api.admin<CreatedEndpoint>("/admin/v1/webhooks", { method: "POST", body }));
      }
      onClose();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal opened onClose={onClose} title={initial ? "Edit endpoint" : "New endpoint"} size="lg">
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red">{error}</Alert>}
          <TextInput label="URL" description="http(s) receiver; private addresses are refused" required value={url} onChange={(e) => setUrl(e.currentTarget.value)} data-autofocus />
          <Textarea
            label="Events"
            description="One glob per line: topics (db:public:orders, room:*) or event types (auth.user.*); * is everything"
            autosize
            minRows={2}
            value={events}
            onChange={(e) => setEvents(e.currentTarget.value)}
          />
          <TextInput label="Description" value={description} onChange={(e) => setDescription(e.currentTarget.value)} />
          <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>Cancel</Button>
            <Button type="submit" loading={busy}>{initial ? "Save endpoint" : "Create endpoint"}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

type Attempt = NonNullable<Delivery["attempt_log"]>[number];

const attemptColumns: Column<Attempt>[] = [
  { header: "#", cell: (a) => a.attempt },
  { header: "Started", cell: (a) => when(a.started_at) },
  { header: "Status", cell: (a) => a.status_code ?? "—" },
  { header: "Latency", cell: (a) => `${a.latency_ms} ms` },
  {
    header: "Response / error",
    cell: (a) => <Text size="xs" ff="monospace" style={{ wordBreak: "break-all" }}>{a.error ?? a.response_excerpt ?? ""}</Text>,
  },
];

function DeliveryDetail({ endpoint, id, onClose, onReplayed }: { endpoint: string; id: string; onClose: () => void; onReplayed: () => void }) {
  const api = useProject();
  const [d, setD] = useState<Delivery | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api
      .admin<Delivery>(`/admin/v1/webhooks/${endpoint}/deliveries/${id}`)
      .then(setD)
      .catch((e) => setError(errorText(e)));
  }, [endpoint, id]);
  return (
    <Modal opened onClose={onClose} title={d ? `Delivery ${d.event_type}` : "Delivery"} size="xl">
      <Stack>
        {error && <Alert color="red">{error}</Alert>}
        {d && (
          <>
            <Group gap="xs">
              <Badge variant="light" color={statusColor[d.status] ?? "gray"}>{d.status}</Badge>
              <Text size="sm">webhook-id <Code>{d.webhook_id}</Code></Text>
              <Text size="sm">{d.attempts} attempt(s)</Text>
              {d.next_attempt_at && <Text size="sm">next {when(d.next_attempt_at)}</Text>}
            </Group>
            <Text size="sm" fw={500}>Body</Text>
            <Code block style={{ maxHeight: 200, overflow: "auto" }}>{JSON.stringify(d.body ?? null, null, 2)}</Code>
            <DataTable
              label="Attempts"
              columns={attemptColumns}
              rows={d.attempt_log ?? []}
              rowKey={(a) => a.attempt}
              empty="No attempt yet."
            />
            <Group justify="flex-end">
              <Button
                variant="light"
                disabled={d.status === "pending"}
                onClick={async () => {
                  try {
                    await api.admin(`/admin/v1/webhooks/${endpoint}/deliveries/${d.id}/replay`, { method: "POST" });
                    notifyOk("Delivery queued again");
                    onReplayed();
                    onClose();
                  } catch (e) {
                    notifyError(e);
                  }
                }}
              >
                Replay
              </Button>
            </Group>
          </>
        )}
      </Stack>
    </Modal>
  );
}

function ReplayFailed({ endpoint, onClose, onDone }: { endpoint: string; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [hours, setHours] = useState<number | string>(24);
  return (
    <Modal opened onClose={onClose} title="Replay failed deliveries">
      <Stack>
        <NumberInput label="Failed in the last (hours)" min={1} max={24 * 90} value={hours} onChange={setHours} data-autofocus />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>Cancel</Button>
          <Button
            onClick={async () => {
              try {
                const since = new Date(Date.now() - Number(hours || 0) * 3600_000).toISOString();
                const r = await api.admin<{ replayed: number }>(`/admin/v1/webhooks/${endpoint}/replay`, { method: "POST", body: { since } });
                notifyOk(`${r.replayed} deliveries queued again`);
                onDone();
                onClose();
              } catch (e) {
                notifyError(e);
              }
            }}
          >
            Replay failed
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function EndpointView({ ep, reload }: { ep: WebhookEndpoint; reload: () => void }) {
  const api = useProject();
  const navigate = useNavigate();
  const [status, setStatus] = useState("all");
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [replaying, setReplaying] = useState(false);
  const [detail, setDetail] = useState<string | null>(null);
  const [rotated, setRotated] = useState<RotatedSecret | null>(null);
  const load = useCallback(() => {
    const q = status === "all" ? "" : `&status=${status}`;
    api
      .admin<Delivery[]>(`/admin/v1/webhooks/${ep.id}/deliveries?limit=100${q}`)
      .then((d) => {
        setDeliveries(d);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref, ep.id, status]);
  useEffect(load, [load]);
  return (
    <Stack>
      <Group justify="space-between" align="flex-start">
        <Stack gap={4} style={{ minWidth: 0 }}>
          <Title order={2} size="h3" style={{ wordBreak: "break-all" }}>{ep.url}</Title>
          <Group gap="xs">
            <Badge variant="light" color={ep.enabled ? "teal" : "gray"}>{ep.enabled ? "enabled" : "disabled"}</Badge>
            {ep.events.map((e) => (
              <Badge key={e} variant="outline" color="gray" tt="none">{e}</Badge>
            ))}
          </Group>
          {ep.description && <Text size="sm">{ep.description}</Text>}
          {ep.disabled_reason && <Alert color="orange">Disabled: {ep.disabled_reason}</Alert>}
          {ep.consecutive_failures > 0 && <Text size="sm" c="red">{ep.consecutive_failures} consecutive failures</Text>}
          {ep.previous_secret_expires_at && <Text size="sm" c="dimmed">Previous secret also signs until {when(ep.previous_secret_expires_at)}</Text>}
        </Stack>
        <Group gap="xs">
          <Switch
            label="Enabled"
            checked={ep.enabled}
            onChange={async (e) => {
              try {
                await api.admin(`/admin/v1/webhooks/${ep.id}`, { method: "PATCH", body: { enabled: e.currentTarget.checked } });
                reload();
              } catch (err) {
                notifyError(err);
              }
            }}
          />
          <Button size="xs" variant="default" onClick={() => setEditing(true)}>Edit</Button>
          <Button
            size="xs"
            variant="default"
            onClick={async () => {
              try {
                setRotated(await api.admin<RotatedSecret>(`/admin/v1/webhooks/${ep.id}/rotate-secret`, { method: "POST", body: {} }));
                reload();
              } catch (err) {
                notifyError(err);
              }
            }}
          >
            Rotate secret
          </Button>
          <Button size="xs" variant="light" color="red" onClick={() => setDeleting(true)}>Delete</Button>
        </Group>
      </Group>
      <Group justify="space-between">
        <Title order={3} size="h4">Deliveries</Title>
        <Group gap="xs">
          <SegmentedControl
            size="xs"
            aria-label="Delivery status"
            value={status}
            onChange={setStatus}
            data={["all", "pending", "succeeded", "failed"]}
          />
          <Button size="xs" variant="default" onClick={load}>Refresh</Button>
          <Button size="xs" variant="light" onClick={() => setReplaying(true)}>Replay failed…</Button>
        </Group>
      </Group>
      <DataTable
        label="Deliveries"
        columns={[
          { header: "Created", cell: (d) => when(d.created_at) },
          { header: "Event", cell: (d) => <Code>{d.event_type}</Code> },
          { header: "Status", cell: (d) => <Badge variant="light" color={statusColor[d.status] ?? "gray"}>{d.status}</Badge> },
          { header: "Attempts", cell: (d) => d.attempts },
          { header: "Last answer", cell: (d) => <Text size="xs" lineClamp={1}>{d.last_status ?? ""} {d.last_error ?? ""}</Text> },
          {
            header: "Actions",
            hidden: true,
            cell: (d) => (
              <Button size="xs" variant="subtle" onClick={() => setDetail(d.id)} aria-label={`Details of delivery ${d.id}`}>Details</Button>
            ),
          },
        ]}
        rows={deliveries}
        rowKey={(d) => d.id}
        error={error}
        empty={`No deliveries${status === "all" ? " yet" : ` ${status}`}.`}
      />
      {editing && <EndpointForm initial={ep} onClose={() => setEditing(false)} onDone={reload} />}
      {replaying && <ReplayFailed endpoint={ep.id} onClose={() => setReplaying(false)} onDone={load} />}
      {detail && <DeliveryDetail endpoint={ep.id} id={detail} onClose={() => setDetail(null)} onReplayed={load} />}
      {rotated && (
        <SecretOnce
          title="Secret rotated"
          secret={rotated.secret}
          note={rotated.previous_secret_expires_at ? `The previous secret also signs deliveries until ${when(rotated.previous_secret_expires_at)}.` : undefined}
          onClose={() => setRotated(null)}
        />
      )}
      <ConfirmDelete
        opened={deleting}
        onClose={() => setDeleting(false)}
        title="Delete endpoint"
        word="delete"
        what={`${ep.url} and its delivery log are deleted.`}
        onConfirm={async () => {
          await api.admin(`/admin/v1/webhooks/${ep.id}`, { method: "DELETE" });
          notifyOk("Endpoint deleted");
          navigate(`/projects/${api.ref}/webhooks`);
          reload();
        }}
      />
    </Stack>
  );
}

export default function WebhooksPage() {
  const api = useProject();
  const params = useParams();
  const navigate = useNavigate();
  const [endpoints, setEndpoints] = useState<WebhookEndpoint[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedEndpoint | null>(null);
  const load = useCallback(() => {
    api
      .admin<WebhookEndpoint[]>("/admin/v1/webhooks")
      .then((e) => {
        setEndpoints(e);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  useEffect(load, [load]);
  const ep = endpoints?.find((e) => e.id === params.id);
  return (
    <Flex direction={{ base: "column", md: "row" }} gap="md" align={{ base: "stretch", md: "flex-start" }}>
      <Stack w={{ base: "100%", md: 260 }} gap={4} style={{ flexShrink: 0 }} component="nav" aria-label="Webhook endpoints">
        <Button size="xs" onClick={() => setCreating(true)}>New endpoint</Button>
        {error && <Text c="red" size="sm">{error}</Text>}
        {endpoints?.map((e) => (
          <NavLink
            component="button"
            key={e.id}
            label={<Text size="sm" truncate>{e.url}</Text>}
            description={e.enabled ? e.events.join(", ") : "disabled"}
            active={e.id === params.id}
            onClick={() => navigate(`/projects/${api.ref}/webhooks/${e.id}`)}
          />
        ))}
        {endpoints?.length === 0 && <Text size="sm" c="dimmed">No endpoints yet.</Text>}
      </Stack>
      <div style={{ flex: 1, minWidth: 0 }}>
        {ep ? <EndpointView key={ep.id} ep={ep} reload={load} /> : <Text c="dimmed">Pick an endpoint, or create one to receive signed events.</Text>}
      </div>
      {creating && (
        <EndpointForm
          onClose={() => setCreating(false)}
          onDone={(c) => {
            if (c) {
              setCreated(c);
              navigate(`/projects/${api.ref}/webhooks/${c.id}`);
            }
            load();
          }}
        />
      )}
      {created && <SecretOnce title="Endpoint created" secret={created.secret} onClose={() => setCreated(null)} />}
    </Flex>
  );
}
