// Auth users through the GoTrue-compatible admin API (service-role key):
// list and search (email, phone or id prefix), both paged on the server;
// create, invite, ban, sign out everywhere, delete.
import { useCallback, useEffect, useState } from "react";
import { Badge, Button, Checkbox, Group, Menu, Modal, Pagination, PasswordInput, Select, Stack, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { errorText } from "../api/client";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal, type Column } from "../components/data";

interface User {
  id: string;
  email?: string;
  phone?: string;
  created_at: string;
  last_sign_in_at?: string | null;
  email_confirmed_at?: string | null;
  banned_until?: string | null;
  is_anonymous?: boolean;
  app_metadata?: { provider?: string; providers?: string[] };
}

const PER_PAGE = 50;

function isBanned(u: User): boolean {
  return !!u.banned_until && new Date(u.banned_until) > new Date();
}

function NewUser({ mode, onClose, onDone }: { mode: "create" | "invite"; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState(true);
  return (
    <FormModal
      title={mode === "create" ? "Create user" : "Invite user"}
      submitLabel={mode === "create" ? "Create user" : "Send invitation"}
      onClose={onClose}
      onSubmit={async () => {
        if (mode === "create") {
          await api.service("/auth/v1/admin/users", { method: "POST", body: { email, password: password || undefined, email_confirm: confirm } });
        } else {
          await api.service("/auth/v1/invite", { method: "POST", body: { email } });
        }
        notifyOk(mode === "create" ? `User ${email} created` : `Invitation sent to ${email}`);
        onDone();
      }}
    >
      <TextInput label="Email" type="email" required value={email} onChange={(e) => setEmail(e.currentTarget.value)} data-autofocus />
      {mode === "create" && (
        <>
          <PasswordInput label="Password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.currentTarget.value)} />
          <Checkbox label="Email already confirmed" checked={confirm} onChange={(e) => setConfirm(e.currentTarget.checked)} />
        </>
      )}
    </FormModal>
  );
}

export default function AuthUsers() {
  const api = useProject();
  const [users, setUsers] = useState<User[]>([]);
  const [total, setTotal] = useState(0);
  const [page, setPage] = useState(1);
  const [search, setSearch] = useState("");
  const [query] = useDebouncedValue(search.trim(), 250);
  const [error, setError] = useState<string | null>(null);
  const [dialog, setDialog] = useState<"create" | "invite" | null>(null);
  const [deleting, setDeleting] = useState<User | null>(null);
  const [banning, setBanning] = useState<User | null>(null);
  const [banFor, setBanFor] = useState<string | null>("24h");
  // A new search starts on its first page.
  useEffect(() => setPage(1), [query]);
  const load = useCallback(() => {
    let live = true;
    const params = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
    if (query) params.set("search", query);
    api
      .service<Response>(`/auth/v1/admin/users?${params}`, { raw: true })
      .then(async (resp) => {
        const list = ((await resp.json()) as { users: User[] }).users;
        if (!live) return;
        setTotal(Number(resp.headers.get("x-total-count") ?? 0));
        setUsers(list);
        setError(null);
      })
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [api.ref, page, query]);
  useEffect(load, [load]);
  const act = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
      notifyOk(what);
      load();
    } catch (e) {
      notifyError(e);
    }
  };
  const columns: Column<User>[] = [
    {
      header: "Email",
      cell: (u) => (
        <>
          <Text size="sm">{u.email || u.phone || (u.is_anonymous ? "anonymous" : "—")}</Text>
          <Text size="xs" c="dimmed" className="mono">{u.id}</Text>
        </>
      ),
    },
    { header: "Provider", cell: (u) => u.app_metadata?.providers?.join(", ") ?? u.app_metadata?.provider ?? "" },
    { header: "Created", cell: (u) => new Date(u.created_at).toLocaleString() },
    { header: "Last sign-in", cell: (u) => (u.last_sign_in_at ? new Date(u.last_sign_in_at).toLocaleString() : "never") },
    {
      header: "Status",
      cell: (u) =>
        isBanned(u) ? <Badge color="red" variant="light">banned</Badge> : u.email_confirmed_at ? <Badge variant="light">confirmed</Badge> : <Badge color="gray" variant="light">unconfirmed</Badge>,
    },
    {
      header: "Actions",
      hidden: true,
      cell: (u) => (
        <Menu position="bottom-end">
          <Menu.Target>
            <Button size="xs" variant="default" aria-label={`Actions for ${u.email ?? u.id}`}>Actions</Button>
          </Menu.Target>
          <Menu.Dropdown>
            {isBanned(u) ? (
              <Menu.Item onClick={() => act("User unbanned", () => api.service(`/auth/v1/admin/users/${u.id}`, { method: "PUT", body: { ban_duration: "none" } }))}>Unban</Menu.Item>
            ) : (
              <Menu.Item onClick={() => setBanning(u)}>Ban…</Menu.Item>
            )}
            <Menu.Item onClick={() => act("Signed out everywhere", () => api.service(`/auth/v1/admin/users/${u.id}/sessions`, { method: "DELETE" }))}>
              Sign out everywhere
            </Menu.Item>
            <Menu.Item color="red" onClick={() => setDeleting(u)}>Delete…</Menu.Item>
          </Menu.Dropdown>
        </Menu>
      ),
    },
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">Auth users</Title>
        <Group gap="xs">
          <Button onClick={() => setDialog("create")}>Create user</Button>
          <Button variant="default" onClick={() => setDialog("invite")}>Invite</Button>
        </Group>
      </Group>
      <TextInput
        label="Search users"
        description="Email, phone or id starting with this text (any case)"
        placeholder="ada@, +44, 3f2a…"
        value={search}
        onChange={(e) => setSearch(e.currentTarget.value)}
        maw={360}
        maxLength={256}
      />
      <DataTable
        label="Users"
        columns={columns}
        rows={users}
        rowKey={(u) => u.id}
        error={error}
        empty={query ? `No user matches "${query}".` : "No users yet."}
      />
      <Group justify="space-between">
        <Text size="sm" c="dimmed" data-testid="user-count">{total} user(s){query ? " matching" : ""}</Text>
        <Pagination size="sm" total={Math.max(1, Math.ceil(total / PER_PAGE))} value={page} onChange={setPage} getControlProps={(c) => ({ "aria-label": `${c} page` })} />
      </Group>
      {dialog && <NewUser mode={dialog} onClose={() => setDialog(null)} onDone={load} />}
      {banning && (
        <Modal opened onClose={() => setBanning(null)} title={`Ban ${banning.email ?? banning.id}`}>
          <Stack>
            <Select label="For" data={["1h", "24h", "168h", "8760h"]} value={banFor} onChange={setBanFor} />
            <Group justify="flex-end">
              <Button variant="default" onClick={() => setBanning(null)}>Cancel</Button>
              <Button
                color="red"
                onClick={async () => {
                  const u = banning;
                  setBanning(null);
                  await act("User banned", () => api.service(`/auth/v1/admin/users/${u.id}`, { method: "PUT", body: { ban_duration: banFor ?? "24h" } }));
                }}
              >
                Ban
              </Button>
            </Group>
          </Stack>
        </Modal>
      )}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete user"
          word={deleting.email ?? deleting.id}
          what="The user, their sessions and identities are deleted."
          onConfirm={async () => {
            await api.service(`/auth/v1/admin/users/${deleting.id}`, { method: "DELETE" });
            notifyOk("User deleted");
            load();
          }}
        />
      )}
    </Stack>
  );
}
