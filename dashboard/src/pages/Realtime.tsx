// Realtime (`/admin/v1/realtime/…`, admin token): channel definitions
// (create, edit public/enabled/retention, delete), the tables whose changes
// are captured as `db:{schema}:{table}` events, a test publish over HTTP, and
// a live inspector: the browser joins channels over Socket.IO
// (socket.io-client, as any app would) and lists messages, presence and
// change events as they arrive.
//
// The inspector connects with the project's service-role key (held in
// memory by the project context, like the admin token) or with a user's
// access token pasted for the session; the token travels in the Socket.IO
// handshake body (`auth`), never in a URL, and is not stored anywhere.
import { useEffect, useRef, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Checkbox,
  Code,
  Group,
  NumberInput,
  PasswordInput,
  SegmentedControl,
  Select,
  Stack,
  Switch,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { io, type Socket } from "socket.io-client";
import { apiRoot } from "../api/client";
import type { ChangeTable, ChannelDef, TableInfo } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal, useLoad, type Column } from "../components/data";

function ChannelForm({ initial, onClose, onDone }: { initial?: ChannelDef; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [pattern, setPattern] = useState(initial?.pattern ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [isPublic, setPublic] = useState(initial?.public ?? false);
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [retention, setRetention] = useState<number | string>(initial?.retention_hours ?? 24);
  return (
    <FormModal
      title={initial ? "Edit channel" : "New channel"}
      submitLabel={initial ? "Save channel" : "Create channel"}
      onClose={onClose}
      onSubmit={async () => {
        const body = { pattern, description: description || null, public: isPublic, enabled, retention_hours: Number(retention) };
        if (initial) await api.admin(`/admin/v1/realtime/channels/${initial.id}`, { method: "PATCH", body });
        else await api.admin("/admin/v1/realtime/channels", { method: "POST", body });
        notifyOk(initial ? "Channel saved" : `Channel ${pattern} created`);
        onDone();
      }}
    >
      <TextInput label="Pattern" description="LIKE pattern of channel names, e.g. room:%" required value={pattern} onChange={(e) => setPattern(e.currentTarget.value)} data-autofocus />
      <TextInput label="Description" value={description} onChange={(e) => setDescription(e.currentTarget.value)} />
      <Checkbox label="Public (any valid key; private channels are decided by RLS on realtime.messages)" checked={isPublic} onChange={(e) => setPublic(e.currentTarget.checked)} />
      <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
      <NumberInput label="History retention (hours)" min={0} value={retention} onChange={setRetention} />
    </FormModal>
  );
}

function Channels() {
  const api = useProject();
  const { data: channels, error, reload: load } = useLoad(() => api.admin<ChannelDef[]>("/admin/v1/realtime/channels"), [], [api.ref]);
  const [editing, setEditing] = useState<ChannelDef | "new" | null>(null);
  const [deleting, setDeleting] = useState<ChannelDef | null>(null);
  const columns: Column<ChannelDef>[] = [
    { header: "Pattern", cell: (c) => <Code>{c.pattern}</Code> },
    { header: "Access", cell: (c) => <Badge variant="light" color={c.public ? "orange" : "teal"}>{c.public ? "public" : "private"}</Badge> },
    { header: "State", cell: (c) => <Badge variant="light" color={c.enabled ? "teal" : "gray"}>{c.enabled ? "enabled" : "disabled"}</Badge> },
    { header: "Retention", cell: (c) => `${c.retention_hours} h` },
    { header: "Description", cell: (c) => c.description },
    {
      header: "Actions",
      hidden: true,
      cell: (c) => (
        <Group gap={4} wrap="nowrap">
          <Button size="xs" variant="subtle" aria-label={`Edit channel ${c.pattern}`} onClick={() => setEditing(c)}>Edit</Button>
          <Button size="xs" variant="subtle" color="red" aria-label={`Delete channel ${c.pattern}`} onClick={() => setDeleting(c)}>Delete</Button>
        </Group>
      ),
    },
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">Channels</Title>
        <Button size="xs" onClick={() => setEditing("new")}>New channel</Button>
      </Group>
      <DataTable label="Channels" columns={columns} rows={channels} rowKey={(c) => c.id} error={error} empty="No channel definitions: every channel follows the defaults." />
      {editing && <ChannelForm initial={editing === "new" ? undefined : editing} onClose={() => setEditing(null)} onDone={load} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete channel"
          word={deleting.pattern}
          what={`The definition of ${deleting.pattern} is deleted.`}
          onConfirm={async () => {
            await api.admin(`/admin/v1/realtime/channels/${deleting.id}`, { method: "DELETE" });
            notifyOk("Channel deleted");
            load();
          }}
        />
      )}
    </Stack>
  );
}

function Changes() {
  const api = useProject();
  const { data: changes, error, reload: load } = useLoad(() => api.admin<ChangeTable[]>("/admin/v1/realtime/changes"), [], [api.ref]);
  const { data: tables } = useLoad(() => api.admin<TableInfo[]>("/admin/v1/tables?schema=public").catch(() => []), [], [api.ref]);
  const [pick, setPick] = useState<string | null>(null);
  const put = async (schema: string, table: string, ops: { insert: boolean; update: boolean; delete: boolean }) => {
    try {
      await api.admin(`/admin/v1/realtime/changes/${encodeURIComponent(schema)}/${encodeURIComponent(table)}`, { method: "PUT", body: ops });
      load();
    } catch (e) {
      notifyError(e);
    }
  };
  const captured = new Set(changes.map((c) => `${c.schema}.${c.table}`));
  const stop = async (c: ChangeTable) => {
    try {
      await api.admin(`/admin/v1/realtime/changes/${encodeURIComponent(c.schema)}/${encodeURIComponent(c.table)}`, { method: "DELETE" });
      load();
    } catch (e) {
      notifyError(e);
    }
  };
  const changeColumns: Column<ChangeTable>[] = [
    { header: "Table", cell: (c) => <Code>{`${c.schema}.${c.table}`}</Code> },
    ...(["insert", "update", "delete"] as const).map((op) => ({
      header: op[0].toUpperCase() + op.slice(1),
      cell: (c: ChangeTable) => (
        <Checkbox
          aria-label={`Capture ${op} on ${c.schema}.${c.table}`}
          checked={c[op]}
          onChange={(e) => put(c.schema, c.table, { insert: c.insert, update: c.update, delete: c.delete, [op]: e.currentTarget.checked })}
        />
      ),
    })),
    {
      header: "Actions",
      hidden: true,
      cell: (c) => (
        <Button size="xs" variant="subtle" color="red" aria-label={`Stop capturing ${c.schema}.${c.table}`} onClick={() => stop(c)}>
          Stop
        </Button>
      ),
    },
  ];
  const choices = tables.filter((t) => !captured.has(`${t.schema}.${t.name}`)).map((t) => `${t.schema}.${t.name}`);
  return (
    <Stack>
      <Title order={2} size="h3">Change capture</Title>
      <Text size="sm" c="dimmed">Captured tables publish their row changes as events on <Code>db:schema:table</Code> (subscribers need read access to the row).</Text>
      {error && <Alert color="red">{error}</Alert>}
      <Group align="flex-end">
        <Select label="Table" placeholder="public table" data={choices} value={pick} onChange={setPick} searchable />
        <Button
          disabled={!pick}
          onClick={async () => {
            if (!pick) return;
            const [schema, ...rest] = pick.split(".");
            await put(schema, rest.join("."), { insert: true, update: true, delete: true });
            notifyOk(`Capturing ${pick}`);
            setPick(null);
          }}
        >
          Capture changes
        </Button>
      </Group>
      <DataTable label="Captured tables" columns={changeColumns} rows={changes} rowKey={(c) => `${c.schema}.${c.table}`} empty="No table is captured." />
    </Stack>
  );
}

function Publish() {
  const api = useProject();
  const [channel, setChannel] = useState("room:lobby");
  const [event, setEvent] = useState("message");
  const [payload, setPayload] = useState('{"text": "hello"}');
  return (
    <Stack>
      <Title order={2} size="h3">Send a test message</Title>
      <Group align="flex-end" grow>
        <TextInput label="Channel" value={channel} onChange={(e) => setChannel(e.currentTarget.value)} />
        <TextInput label="Event" value={event} onChange={(e) => setEvent(e.currentTarget.value)} />
      </Group>
      <Textarea label="Payload (JSON)" autosize minRows={2} value={payload} onChange={(e) => setPayload(e.currentTarget.value)} />
      <Group>
        <Button
          variant="light"
          onClick={async () => {
            try {
              await api.service("/realtime/v1/messages", { method: "POST", body: { channel, event, payload: JSON.parse(payload) } });
              notifyOk(`Published to ${channel}`);
            } catch (e) {
              notifyError(e);
            }
          }}
        >
          Publish (service role)
        </Button>
      </Group>
    </Stack>
  );
}

/** One line of the inspector. */
interface Seen {
  n: number;
  at: string;
  kind: "message" | "presence" | "change" | "system" | "error";
  event: string;
  channel: string;
  data: string;
}

/** Most lines kept (oldest dropped). */
const MAX_SEEN = 200;

function kindOf(event: string, channel: string): Seen["kind"] {
  if (event.startsWith("presence:")) return "presence";
  if (event === "realtime:error") return "error";
  if (event.startsWith("realtime:")) return "system";
  if (channel.startsWith("db:")) return "change";
  return "message";
}

const kindColor: Record<Seen["kind"], string> = { message: "blue", presence: "grape", change: "teal", system: "gray", error: "red" };

function Inspector() {
  const api = useProject();
  const [as, setAs] = useState<"service" | "user">("service");
  const [userToken, setUserToken] = useState("");
  const [state, setState] = useState<"disconnected" | "connecting" | "connected">("disconnected");
  const [error, setError] = useState<string | null>(null);
  const [channel, setChannel] = useState("room:lobby");
  const [joined, setJoined] = useState<string[]>([]);
  // Presence ids per joined channel (the subscribe ack lists them; join/leave events update them).
  const [members, setMembers] = useState<Record<string, string[]>>({});
  const [seen, setSeen] = useState<Seen[]>([]);
  const [event, setEvent] = useState("message");
  const [payload, setPayload] = useState('{"text": "hello from the inspector"}');
  const socket = useRef<Socket | null>(null);
  const counter = useRef(0);

  const add = (line: Omit<Seen, "n" | "at">) => {
    counter.current += 1;
    const entry = { ...line, n: counter.current, at: new Date().toLocaleTimeString() };
    setSeen((s) => [entry, ...s].slice(0, MAX_SEEN));
  };

  const disconnect = () => {
    socket.current?.disconnect();
    socket.current = null;
    setState("disconnected");
    setJoined([]);
    setMembers({});
  };
  // Leaving the page closes the socket.
  useEffect(() => disconnect, [api.ref]);

  const connect = () => {
    const token = as === "service" ? api.details.service_role_key : userToken.trim();
    if (!token) {
      setError("Paste a user access token first.");
      return;
    }
    disconnect();
    setError(null);
    setState("connecting");
    const s = io(window.location.origin, {
      path: `${apiRoot}/p/${encodeURIComponent(api.ref)}/realtime/v1/socket.io`,
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      timeout: 10_000,
    });
    socket.current = s;
    s.on("connect", () => {
      setState("connected");
      add({ kind: "system", event: "connected", channel: "", data: `socket ${s.id ?? ""}` });
    });
    s.on("connect_error", (e) => {
      setError(`Could not connect: ${e.message}`);
      setState("disconnected");
    });
    s.on("disconnect", (reason) => {
      add({ kind: "system", event: "disconnected", channel: "", data: reason });
      setState("disconnected");
      setJoined([]);
    });
    s.onAny((name: string, data: unknown) => {
      const d = (data ?? {}) as Record<string, unknown>;
      const meta = (d.meta ?? {}) as Record<string, unknown>;
      const ch = [d.channel, meta.channel, d.topic].find((c): c is string => typeof c === "string") ?? "";
      const id = typeof d.presenceId === "string" ? d.presenceId : null;
      if (id && (name === "presence:join" || name === "presence:leave")) {
        setMembers((m) => {
          const others = (m[ch] ?? []).filter((x) => x !== id);
          return { ...m, [ch]: name === "presence:join" ? [...others, id] : others };
        });
      }
      add({ kind: kindOf(name, ch), event: name, channel: ch, data: JSON.stringify(data) });
    });
  };

  const join = async () => {
    const s = socket.current;
    if (!s) return;
    try {
      const ack = (await s.timeout(10_000).emitWithAck("realtime:subscribe", { channel, state: { inspector: true } })) as Record<string, unknown>;
      if (ack?.ok) {
        setJoined((j) => (j.includes(channel) ? j : [...j, channel]));
        const list = (ack.presence as { members?: { presenceId?: string }[] } | undefined)?.members ?? [];
        const ids = list.map((x) => x.presenceId).filter((x): x is string => typeof x === "string");
        setMembers((m) => ({ ...m, [channel]: [...new Set([...(m[channel] ?? []), ...ids])] }));
        add({ kind: "system", event: "joined", channel, data: JSON.stringify(ack) });
      } else {
        add({ kind: "error", event: "join refused", channel, data: JSON.stringify(ack) });
      }
    } catch (e) {
      notifyError(e, "Join failed");
    }
  };

  const leave = async (name: string) => {
    await socket.current?.timeout(10_000).emitWithAck("realtime:unsubscribe", { channel: name }).catch(() => undefined);
    setJoined((j) => j.filter((c) => c !== name));
  };

  const broadcast = async () => {
    const s = socket.current;
    if (!s) return;
    let body: unknown;
    try {
      body = JSON.parse(payload);
    } catch {
      notifyError(new Error("The payload is not valid JSON."));
      return;
    }
    try {
      const ack = (await s.timeout(10_000).emitWithAck("realtime:publish", { channel, event, payload: body })) as Record<string, unknown>;
      add({ kind: ack?.ok ? "system" : "error", event: ack?.ok ? "sent" : "send refused", channel, data: JSON.stringify(ack) });
    } catch (e) {
      notifyError(e, "Send failed");
    }
  };

  const columns: Column<Seen>[] = [
    { header: "Time", cell: (l) => l.at },
    { header: "Kind", cell: (l) => <Badge variant="light" color={kindColor[l.kind]}>{l.kind}</Badge> },
    { header: "Event", cell: (l) => <Code>{l.event}</Code> },
    { header: "Channel", cell: (l) => l.channel },
    { header: "Data", cell: (l) => <Code style={{ wordBreak: "break-all", whiteSpace: "pre-wrap" }}>{l.data.length > 400 ? `${l.data.slice(0, 400)}…` : l.data}</Code> },
  ];

  return (
    <Stack>
      <Title order={2} size="h3">Live inspector</Title>
      <Text size="sm" c="dimmed">
        Joins channels from this browser over Socket.IO and shows messages, presence and change events as they arrive. Change events (<Code>db:schema:table</Code>) are delivered only for rows the token may read.
      </Text>
      {error && <Alert color="red">{error}</Alert>}
      <Group align="flex-end">
        <Text size="sm" fw={500}>Connect as</Text>
        <SegmentedControl
          value={as}
          onChange={(v) => setAs(v as "service" | "user")}
          data={[
            { value: "service", label: "Service role" },
            { value: "user", label: "User token" },
          ]}
        />
        {as === "user" && (
          <PasswordInput label="User access token" autoComplete="off" value={userToken} onChange={(e) => setUserToken(e.currentTarget.value)} style={{ flex: 1, minWidth: 220 }} />
        )}
        {state === "disconnected" ? (
          <Button onClick={connect}>Connect</Button>
        ) : (
          <Button variant="default" onClick={disconnect} loading={state === "connecting"}>Disconnect</Button>
        )}
        <Badge variant="light" color={state === "connected" ? "teal" : "gray"} role="status" aria-label="Connection state">{state}</Badge>
      </Group>
      <Group align="flex-end">
        <TextInput label="Inspector channel" value={channel} onChange={(e) => setChannel(e.currentTarget.value)} />
        <Button disabled={state !== "connected"} onClick={join}>Join</Button>
      </Group>
      {joined.length > 0 && (
        <Group gap="xs" role="group" aria-label="Joined channels">
          {joined.map((c) => (
            <Badge key={c} variant="outline" rightSection={
              <button type="button" className="badge-close" aria-label={`Leave ${c}`} onClick={() => leave(c)}>×</button>
            }>
              {c} · {(members[c] ?? []).length} present
            </Badge>
          ))}
        </Group>
      )}
      <Group align="flex-end" grow>
        <TextInput label="Broadcast event" value={event} onChange={(e) => setEvent(e.currentTarget.value)} />
        <TextInput label="Broadcast payload (JSON)" value={payload} onChange={(e) => setPayload(e.currentTarget.value)} />
      </Group>
      <Group>
        <Button variant="light" disabled={!joined.includes(channel)} onClick={broadcast}>Send broadcast</Button>
        <Button variant="default" onClick={() => setSeen([])}>Clear</Button>
      </Group>
      <DataTable label="Inspector events" columns={columns} rows={seen} rowKey={(l) => l.n} empty="Nothing received yet." />
    </Stack>
  );
}

export default function RealtimePage() {
  return (
    <Stack gap="xl">
      <Channels />
      <Changes />
      <Publish />
      <Inspector />
    </Stack>
  );
}
