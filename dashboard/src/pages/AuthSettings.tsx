// Auth settings (`/auth/v1/admin/…`, service-role key): sign-up and
// password rules, rate limits and lockout; OAuth/OIDC providers (client
// secret write-only); mail templates with a preview; the project's SMTP
// server (the URL holds credentials: write-only); captured and sent mail.
import { useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Code,
  Group,
  Loader,
  Modal,
  NumberInput,
  Select,
  SimpleGrid,
  Stack,
  Switch,
  Tabs,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { errorText } from "../api/client";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal, useLoad } from "../components/data";

type Config = Record<string, unknown>;

const numbers: [string, string][] = [
  ["jwt_exp", "Access token lifetime (s)"],
  ["password_min_length", "Minimum password length"],
  ["refresh_token_reuse_interval", "Refresh token reuse interval (s)"],
  ["lockout_max_attempts", "Failed sign-ins before lockout"],
  ["lockout_duration_secs", "Lockout duration (s)"],
  ["rate_limit_window_secs", "Rate limit window (s)"],
  ["rate_limit_sign_in_sign_ups", "Sign-ins and sign-ups per window"],
  ["rate_limit_token_refresh", "Token refreshes per window"],
  ["rate_limit_verify", "Verifications per window"],
  ["rate_limit_otp", "OTP/magic-link mails per window"],
  ["rate_limit_per_account", "Attempts per account per window"],
  ["smtp_max_frequency_secs", "Seconds between mails to one address"],
  ["mailer_otp_exp", "OTP lifetime (s)"],
];
const switches: [string, string][] = [
  ["disable_signup", "Disable sign-ups"],
  ["mailer_autoconfirm", "Confirm emails automatically"],
  ["external_email_enabled", "Email and password sign-in"],
  ["external_anonymous_users_enabled", "Anonymous sign-ins"],
  ["secure_email_change_enabled", "Confirm email changes on both addresses"],
];

function ConfigForm() {
  const api = useProject();
  const [c, setC] = useState<Config | null>(null);
  const [allow, setAllow] = useState("");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api
      .service<Config>("/auth/v1/admin/config")
      .then((v) => {
        setC(v);
        setAllow(((v.uri_allow_list as string[]) ?? []).join("\n"));
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  if (error) return <Alert color="red">{error}</Alert>;
  if (!c) return null;
  const save = async () => {
    const patch: Config = { site_url: c.site_url, uri_allow_list: allow.split(/\s+/).filter(Boolean) };
    for (const [k] of [...numbers, ...switches]) if (k in c) patch[k] = c[k];
    try {
      const saved = await api.service<Config>("/auth/v1/admin/config", { method: "PUT", body: patch });
      setC(saved);
      notifyOk("Auth settings saved");
    } catch (e) {
      notifyError(e);
    }
  };
  return (
    <Stack>
      <SimpleGrid cols={{ base: 1, sm: 2 }}>
        <TextInput label="Site URL" value={String(c.site_url ?? "")} onChange={(e) => setC({ ...c, site_url: e.currentTarget.value })} />
        <Textarea label="Redirect allow list" description="One URL or glob per line" autosize minRows={2} value={allow} onChange={(e) => setAllow(e.currentTarget.value)} />
      </SimpleGrid>
      <Group>
        {switches
          .filter(([k]) => k in c)
          .map(([k, label]) => (
            <Switch key={k} label={label} checked={Boolean(c[k])} onChange={(e) => setC({ ...c, [k]: e.currentTarget.checked })} />
          ))}
      </Group>
      <SimpleGrid cols={{ base: 1, sm: 3 }}>
        {numbers
          .filter(([k]) => k in c)
          .map(([k, label]) => (
            <NumberInput key={k} label={label} min={0} value={Number(c[k])} onChange={(v) => setC({ ...c, [k]: Number(v) || 0 })} />
          ))}
      </SimpleGrid>
      <Group>
        <Button onClick={save}>Save auth settings</Button>
      </Group>
    </Stack>
  );
}

interface OAuthProvider {
  name: string;
  kind: string;
  client_id: string;
  issuer: string | null;
  scopes: string;
  enabled: boolean;
  has_secret: boolean;
}

const KINDS = ["oidc", "google", "azure", "linkedin_oidc", "apple", "github", "discord", "facebook", "x"];

function ProviderForm({ initial, onClose, onDone }: { initial?: OAuthProvider; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [name, setName] = useState(initial?.name ?? "");
  const [kind, setKind] = useState<string | null>(initial?.kind ?? "github");
  const [clientId, setClientId] = useState(initial?.client_id ?? "");
  const [secret, setSecret] = useState("");
  const [issuer, setIssuer] = useState(initial?.issuer ?? "");
  const [scopes, setScopes] = useState(initial?.scopes ?? "");
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  return (
    <FormModal
      title={initial ? `Edit ${initial.name}` : "New sign-in provider"}
      submitLabel="Save provider"
      onClose={onClose}
      onSubmit={async () => {
        const body: Record<string, unknown> = { kind, client_id: clientId, issuer: issuer || null, scopes, enabled };
        if (secret) body.client_secret = secret;
        await api.service(`/auth/v1/admin/providers/${encodeURIComponent(name)}`, { method: "PUT", body });
        notifyOk(`Provider ${name} saved`);
        onDone();
      }}
    >
      {!initial && <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} data-autofocus />}
      <Select label="Kind" data={KINDS} value={kind} onChange={setKind} allowDeselect={false} />
      <TextInput label="Client ID" required value={clientId} onChange={(e) => setClientId(e.currentTarget.value)} />
      <TextInput
        label="Client secret"
        type="password"
        autoComplete="off"
        description={initial?.has_secret ? "Stored; type a new one to replace it (never shown)." : "Write-only."}
        value={secret}
        onChange={(e) => setSecret(e.currentTarget.value)}
      />
      <TextInput label="Issuer" description="Required for oidc; the tenant for azure" value={issuer} onChange={(e) => setIssuer(e.currentTarget.value)} />
      <TextInput label="Scopes" description="Space separated; empty for the kind's defaults" value={scopes} onChange={(e) => setScopes(e.currentTarget.value)} />
      <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
    </FormModal>
  );
}

function Providers() {
  const api = useProject();
  const { data: list, error, reload } = useLoad(
    () => api.service<{ providers: OAuthProvider[] }>("/auth/v1/admin/providers").then((r) => r.providers),
    [] as OAuthProvider[],
    [api.ref],
  );
  const [editing, setEditing] = useState<OAuthProvider | "new" | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  return (
    <Stack>
      <Group justify="space-between">
        <Text size="sm" c="dimmed">Callback URL: <Code>{`${window.location.origin}/p/${api.ref}/auth/v1/callback`}</Code></Text>
        <Button size="xs" onClick={() => setEditing("new")}>New sign-in provider</Button>
      </Group>
      <DataTable
        label="Sign-in providers"
        columns={[
          { header: "Name", cell: (p) => p.name },
          { header: "Kind", cell: (p) => p.kind },
          { header: "Client ID", cell: (p) => <Code>{p.client_id}</Code> },
          { header: "Secret", cell: (p) => (p.has_secret ? "stored" : "none") },
          { header: "State", cell: (p) => <Badge variant="light" color={p.enabled ? "teal" : "gray"}>{p.enabled ? "enabled" : "disabled"}</Badge> },
          {
            header: "Actions",
            hidden: true,
            cell: (p) => (
              <Group gap={4} wrap="nowrap">
                <Button size="xs" variant="subtle" aria-label={`Edit ${p.name}`} onClick={() => setEditing(p)}>Edit</Button>
                <Button size="xs" variant="subtle" color="red" aria-label={`Delete ${p.name}`} onClick={() => setDeleting(p.name)}>Delete</Button>
              </Group>
            ),
          },
        ]}
        rows={list}
        rowKey={(p) => p.name}
        error={error}
        empty="No OAuth or OIDC providers."
      />
      {editing && <ProviderForm initial={editing === "new" ? undefined : editing} onClose={() => setEditing(null)} onDone={reload} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete sign-in provider"
          word={deleting}
          what={`Users can no longer sign in with ${deleting}.`}
          onConfirm={async () => {
            await api.service(`/auth/v1/admin/providers/${encodeURIComponent(deleting)}`, { method: "DELETE" });
            reload();
          }}
        />
      )}
    </Stack>
  );
}

const TEMPLATE_KINDS = ["confirmation", "recovery", "magic_link", "invite", "email_change"];

function Templates() {
  const api = useProject();
  const [kind, setKind] = useState<string | null>("confirmation");
  const [subject, setSubject] = useState("");
  const [html, setHtml] = useState("");
  const [text, setText] = useState("");
  const [loaded, setLoaded] = useState<string | null>(null);
  useEffect(() => {
    if (!kind) return;
    setLoaded(null);
    api
      .service<{ subject: string | null; html: string | null; text: string | null }>(`/auth/v1/admin/templates/${kind}`)
      .then((t) => {
        setSubject(t.subject ?? "");
        setHtml(t.html ?? "");
        setText(t.text ?? "");
        setLoaded(kind);
      })
      .catch((e) => notifyError(e));
  }, [api.ref, kind]);
  // The preview fills the usual variables with samples (no template engine in the page).
  const preview = html
    .replace(/\{\{\s*confirmation_url\s*\}\}/g, "https://example.com/confirm?token=sample")
    .replace(/\{\{\s*token\s*\}\}/g, "123456")
    .replace(/\{\{\s*(email|new_email)\s*\}\}/g, "ada@example.com")
    .replace(/\{\{\s*site_url\s*\}\}/g, "https://example.com");
  return (
    <Stack>
      <Select label="Template" data={TEMPLATE_KINDS} value={kind} onChange={setKind} allowDeselect={false} maw={280} />
      <Text size="sm" c="dimmed">MiniJinja; an empty field uses the built-in default.</Text>
      {loaded !== kind ? (
        <Loader aria-label="Loading the template" />
      ) : (
      <>
      <TextInput label="Subject" value={subject} onChange={(e) => setSubject(e.currentTarget.value)} />
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Textarea label="HTML body" autosize minRows={8} maxRows={20} value={html} onChange={(e) => setHtml(e.currentTarget.value)} styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} />
        <Stack gap={4}>
          <Text size="sm" fw={500}>Preview</Text>
          <iframe title="Template preview" sandbox="" srcDoc={preview || "<p>(default template)</p>"} style={{ width: "100%", minHeight: 220, border: "1px solid var(--mantine-color-default-border)", background: "white" }} />
        </Stack>
      </SimpleGrid>
      <Textarea label="Text body" autosize minRows={3} value={text} onChange={(e) => setText(e.currentTarget.value)} />
      <Group>
        <Button
          onClick={async () => {
            try {
              await api.service(`/auth/v1/admin/templates/${kind}`, {
                method: "PUT",
                body: { subject: subject || null, html: html || null, text: text || null },
              });
              notifyOk("Template saved");
            } catch (e) {
              notifyError(e);
            }
          }}
        >
          Save template
        </Button>
      </Group>
      </>
      )}
    </Stack>
  );
}

function Smtp() {
  const api = useProject();
  const [url, setUrl] = useState("");
  const [from, setFrom] = useState("");
  const save = async (body: { url: string | null; from: string | null }) => {
    try {
      await api.service("/auth/v1/admin/smtp", { method: "PUT", body });
      notifyOk(body.url ? "SMTP server saved" : "SMTP server removed: the platform's mailer is used");
      setUrl("");
    } catch (e) {
      notifyError(e);
    }
  };
  return (
    <Stack maw={520}>
      <Text size="sm" c="dimmed">The project's own SMTP server. The URL carries credentials: it is stored encrypted and never shown again.</Text>
      <TextInput label="SMTP URL" type="password" autoComplete="off" placeholder="smtps://user:password@smtp.example.com:465" value={url} onChange={(e) => setUrl(e.currentTarget.value)} />
      <TextInput label="Sender" placeholder="App <no-reply@example.com>" value={from} onChange={(e) => setFrom(e.currentTarget.value)} />
      <Group>
        <Button disabled={!url} onClick={() => save({ url, from: from || null })}>Save SMTP</Button>
        <Button variant="default" onClick={() => save({ url: null, from: null })}>Use the platform mailer</Button>
      </Group>
    </Stack>
  );
}

interface Mail {
  id: number;
  kind: string;
  to: string;
  subject: string;
  html: string;
  status: string;
  error: string | null;
  created_at: string;
}

function MailLog() {
  const api = useProject();
  const { data: mail, error } = useLoad(
    () => api.service<{ mail: Mail[] }>("/auth/v1/admin/mail?limit=100").then((r) => r.mail),
    [] as Mail[],
    [api.ref],
  );
  const [open, setOpen] = useState<Mail | null>(null);
  return (
    <Stack>
      <DataTable
        label="Mail"
        columns={[
          { header: "Sent", cell: (m) => new Date(m.created_at).toLocaleString() },
          { header: "To", cell: (m) => m.to },
          { header: "Kind", cell: (m) => m.kind },
          { header: "Subject", cell: (m) => <Button size="xs" variant="subtle" onClick={() => setOpen(m)}>{m.subject}</Button> },
          { header: "Status", cell: (m) => `${m.status}${m.error ? `: ${m.error}` : ""}` },
        ]}
        rows={mail}
        rowKey={(m) => m.id}
        error={error}
        empty="No mail yet."
      />
      {open && (
        <Modal opened onClose={() => setOpen(null)} title={open.subject} size="lg">
          <iframe title="Mail body" sandbox="" srcDoc={open.html} style={{ width: "100%", minHeight: 320, border: 0, background: "white" }} />
        </Modal>
      )}
    </Stack>
  );
}

export default function AuthSettingsPage() {
  return (
    <Stack>
      <Title order={2} size="h3">Auth settings</Title>
      <Tabs defaultValue="settings" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="settings">Sign-up, passwords, limits</Tabs.Tab>
          <Tabs.Tab value="providers">Providers</Tabs.Tab>
          <Tabs.Tab value="templates">Email templates</Tabs.Tab>
          <Tabs.Tab value="smtp">SMTP</Tabs.Tab>
          <Tabs.Tab value="mail">Mail log</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="settings" pt="md"><ConfigForm /></Tabs.Panel>
        <Tabs.Panel value="providers" pt="md"><Providers /></Tabs.Panel>
        <Tabs.Panel value="templates" pt="md"><Templates /></Tabs.Panel>
        <Tabs.Panel value="smtp" pt="md"><Smtp /></Tabs.Panel>
        <Tabs.Panel value="mail" pt="md"><MailLog /></Tabs.Panel>
      </Tabs>
    </Stack>
  );
}
