// Storage browser (Supabase Storage-compatible API, service-role key):
// buckets (create public/private with limits, delete), folders, upload with
// a progress bar (resumable over TUS with tus-js-client for big files, or
// when asked), image preview, signed URLs to copy, delete.
import { useCallback, useEffect, useRef, useState } from "react";
import {
  Alert,
  Anchor,
  Badge,
  Breadcrumbs,
  Button,
  Checkbox,
  Flex,
  Group,
  Image,
  Modal,
  NavLink,
  NumberInput,
  Progress,
  Stack,
  Text,
  TextInput,
  Title,
} from "@mantine/core";
import { useNavigate, useParams } from "react-router";
import { apiRoot, errorText } from "../api/client";
import { useProject } from "../project";

/** Files above this go over TUS, in chunks of this size (Supabase's 6 MiB). */
const RESUMABLE_CHUNK = 6 * 1024 * 1024;
import { ConfirmDelete, Copyable, notifyError, notifyOk } from "../components/common";
import { DataTable, FormModal } from "../components/data";

interface Bucket {
  id: string;
  name: string;
  public: boolean;
  file_size_limit: number | null;
  allowed_mime_types: string[] | null;
  created_at: string;
}

interface Entry {
  name: string;
  id: string | null;
  updated_at?: string;
  metadata?: { size?: number; mimetype?: string } | null;
}

/** `GET /admin/v1/storage/usage`. */
interface Usage {
  used_bytes: number;
  reserved_bytes: number;
  quota_bytes: number | null;
}

/** 1536 → "1.5 KiB". */
function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** The project's stored bytes against its storage quota. */
function UsageMeter({ usage }: { usage: Usage }) {
  const used = usage.used_bytes + usage.reserved_bytes;
  const label = usage.quota_bytes == null
    ? `${humanBytes(used)} stored (no quota)`
    : `${humanBytes(used)} of ${humanBytes(usage.quota_bytes)} used`;
  return (
    <Stack gap={2} mt="xs">
      <Text size="xs" c="dimmed" data-testid="storage-usage">{label}</Text>
      {usage.quota_bytes != null && (
        <Progress
          size="sm"
          aria-label="Storage quota used"
          value={Math.min(100, usage.quota_bytes === 0 ? 100 : (100 * used) / usage.quota_bytes)}
          color={used >= usage.quota_bytes ? "red" : "blue"}
        />
      )}
    </Stack>
  );
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

function NewBucket({ onClose, onDone }: { onClose: () => void; onDone: (id: string) => void }) {
  const api = useProject();
  const [name, setName] = useState("");
  const [isPublic, setPublic] = useState(false);
  const [limit, setLimit] = useState<number | string>("");
  const [mimes, setMimes] = useState("");
  return (
    <FormModal
      title="New bucket"
      submitLabel="Create bucket"
      onClose={onClose}
      onSubmit={async () => {
        await api.service("/storage/v1/bucket", {
          method: "POST",
          body: {
            id: name,
            name,
            public: isPublic,
            file_size_limit: limit === "" ? null : Number(limit),
            allowed_mime_types: mimes ? mimes.split(",").map((m) => m.trim()).filter(Boolean) : null,
          },
        });
        notifyOk(`Bucket ${name} created`);
        onDone(name);
      }}
    >
      <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} data-autofocus />
      <Checkbox label="Public (objects readable without a key)" checked={isPublic} onChange={(e) => setPublic(e.currentTarget.checked)} />
      <NumberInput label="File size limit (bytes)" min={0} value={limit} onChange={setLimit} />
      <TextInput label="Allowed MIME types" description="Comma separated, e.g. image/*, application/pdf; empty: any" value={mimes} onChange={(e) => setMimes(e.currentTarget.value)} />
    </FormModal>
  );
}

function Preview({ bucket, path, onClose }: { bucket: string; path: string; onClose: () => void }) {
  const api = useProject();
  const [src, setSrc] = useState<string | null>(null);
  const [signed, setSigned] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let url: string | null = null;
    api
      .service<Response>(`/storage/v1/object/authenticated/${encodeURIComponent(bucket)}/${encodePath(path)}`, { raw: true })
      .then(async (resp) => {
        const blob = await resp.blob();
        if (blob.type.startsWith("image/")) {
          url = URL.createObjectURL(blob);
          setSrc(url);
        }
      })
      .catch((e) => setError(errorText(e)));
    api
      .service<{ signedURL: string }>(`/storage/v1/object/sign/${encodeURIComponent(bucket)}/${encodePath(path)}`, { method: "POST", body: { expiresIn: 3600 } })
      .then((r) => setSigned(`${window.location.origin}${apiRoot}/p/${api.ref}/storage/v1${r.signedURL}`))
      .catch((e) => setError(errorText(e)));
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [bucket, path]);
  return (
    <Modal opened onClose={onClose} title={path} size="lg">
      <Stack>
        {error && <Alert color="red">{error}</Alert>}
        {src && <Image src={src} alt={`Preview of ${path}`} mah={400} fit="contain" />}
        {signed && <Copyable label="Signed URL (1 hour)" value={signed} />}
      </Stack>
    </Modal>
  );
}

function Browser({ bucket }: { bucket: Bucket }) {
  const api = useProject();
  const [prefix, setPrefix] = useState("");
  const [entries, setEntries] = useState<Entry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [resumable, setResumable] = useState(false);
  const [preview, setPreview] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const load = useCallback(() => {
    api
      .service<Entry[]>(`/storage/v1/object/list/${encodeURIComponent(bucket.id)}`, {
        method: "POST",
        body: { prefix, limit: 1000, offset: 0, sortBy: { column: "name", order: "asc" } },
      })
      .then((e) => {
        setEntries(e);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref, bucket.id, prefix]);
  useEffect(load, [load]);

  const uploadResumable = async (file: File) => {
    // TUS (the protocol Supabase Storage speaks for big files): chunks of
    // 6 MiB, retried and resumed from the server's offset after a network
    // error. The upload URL is kept in memory only (no localStorage
    // fingerprints), like the keys.
    const path = `${prefix}${file.name}`;
    const { Upload } = await import("tus-js-client");
    setProgress(0);
    const up = new Upload(file, {
      endpoint: `${window.location.origin}${apiRoot}/p/${encodeURIComponent(api.ref)}/storage/v1/upload/resumable`,
      chunkSize: RESUMABLE_CHUNK,
      retryDelays: [0, 1000, 3000, 5000],
      storeFingerprintForResuming: false,
      headers: { authorization: `Bearer ${api.details.service_role_key}`, apikey: api.details.service_role_key, "x-upsert": "true" },
      metadata: { bucketName: bucket.id, objectName: path, contentType: file.type || "application/octet-stream", cacheControl: "3600" },
      onProgress: (sent, total) => setProgress(total ? (100 * sent) / total : 0),
      onError: (e) => {
        setProgress(null);
        notifyError(e, "Upload failed");
      },
      onSuccess: () => {
        setProgress(null);
        notifyOk(`Uploaded ${path} (resumable)`);
        load();
      },
    });
    up.start();
  };

  const upload = (file: File) => {
    if (resumable || file.size > RESUMABLE_CHUNK) {
      uploadResumable(file).catch((e) => {
        setProgress(null);
        notifyError(e, "Upload failed");
      });
      return;
    }
    // XMLHttpRequest, because fetch reports no upload progress.
    const path = `${prefix}${file.name}`;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${apiRoot}/p/${encodeURIComponent(api.ref)}/storage/v1/object/${encodeURIComponent(bucket.id)}/${encodePath(path)}`);
    xhr.setRequestHeader("authorization", `Bearer ${api.details.service_role_key}`);
    xhr.setRequestHeader("apikey", api.details.service_role_key);
    xhr.setRequestHeader("x-upsert", "true");
    if (file.type) xhr.setRequestHeader("content-type", file.type);
    xhr.upload.onprogress = (e) => e.lengthComputable && setProgress((100 * e.loaded) / e.total);
    xhr.onloadend = () => {
      setProgress(null);
      if (xhr.status >= 200 && xhr.status < 300) {
        notifyOk(`Uploaded ${path}`);
        load();
      } else {
        let message = xhr.responseText;
        try {
          message = JSON.parse(xhr.responseText).message ?? message;
        } catch {
          /* keep the text */
        }
        notifyError(new Error(message || `HTTP ${xhr.status}`), "Upload failed");
      }
    };
    setProgress(0);
    xhr.send(file);
  };

  const parts = prefix.split("/").filter(Boolean);
  return (
    <Stack>
      <Group justify="space-between">
        <Group gap="xs">
          <Title order={2} size="h3">{bucket.name}</Title>
          <Badge variant="light" color={bucket.public ? "orange" : "teal"}>{bucket.public ? "public" : "private"}</Badge>
          {bucket.file_size_limit && <Badge variant="light" color="gray">max {bucket.file_size_limit} bytes</Badge>}
        </Group>
        <Group gap="xs">
          <input
            ref={fileInput}
            type="file"
            hidden
            aria-label="File to upload"
            onChange={(e) => {
              const f = e.currentTarget.files?.[0];
              if (f) upload(f);
              e.currentTarget.value = "";
            }}
          />
          <Checkbox label="Resumable" description="always above 6 MiB" checked={resumable} onChange={(e) => setResumable(e.currentTarget.checked)} />
          <Button onClick={() => fileInput.current?.click()} disabled={progress !== null}>Upload file</Button>
          <Button
            variant="default"
            onClick={() => {
              const name = window.prompt("Folder name");
              if (name) setPrefix(`${prefix}${name.replace(/\//g, "")}/`);
            }}
          >
            New folder
          </Button>
        </Group>
      </Group>
      {progress !== null && <Progress value={progress} aria-label="Upload progress" animated />}
      <Breadcrumbs>
        <Anchor onClick={() => setPrefix("")}>{bucket.name}</Anchor>
        {parts.map((p, i) => (
          <Anchor key={i} onClick={() => setPrefix(parts.slice(0, i + 1).join("/") + "/")}>{p}</Anchor>
        ))}
      </Breadcrumbs>
      <DataTable
        label={`Objects in ${bucket.name}`}
        columns={[
          {
            header: "Name",
            cell: (e) =>
              e.id === null ? (
                <Anchor onClick={() => setPrefix(`${prefix}${e.name}/`)}>📁 {e.name}</Anchor>
              ) : (
                <Anchor onClick={() => setPreview(`${prefix}${e.name}`)}>{e.name}</Anchor>
              ),
          },
          { header: "Type", cell: (e) => e.metadata?.mimetype ?? (e.id === null ? "folder" : "") },
          { header: "Size", cell: (e) => (e.metadata?.size !== undefined ? `${e.metadata.size.toLocaleString()} B` : "") },
          { header: "Updated", cell: (e) => (e.updated_at ? new Date(e.updated_at).toLocaleString() : "") },
          {
            header: "Actions",
            hidden: true,
            cell: (e) =>
              e.id !== null && (
                <Button size="xs" variant="light" color="red" onClick={() => setDeleting(`${prefix}${e.name}`)} aria-label={`Delete ${e.name}`}>
                  Delete
                </Button>
              ),
          },
        ]}
        rows={entries}
        rowKey={(e) => e.name}
        error={error}
        empty="Empty. Upload a file or create a folder."
      />
      {preview && <Preview bucket={bucket.id} path={preview} onClose={() => setPreview(null)} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete object"
          word={deleting.split("/").pop() ?? deleting}
          what={`${deleting} is deleted.`}
          onConfirm={async () => {
            await api.service(`/storage/v1/object/${encodeURIComponent(bucket.id)}`, { method: "DELETE", body: { prefixes: [deleting] } });
            notifyOk("Deleted");
            load();
          }}
        />
      )}
    </Stack>
  );
}

export default function StoragePage() {
  const api = useProject();
  const params = useParams();
  const navigate = useNavigate();
  const [buckets, setBuckets] = useState<Bucket[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Bucket | null>(null);
  const [usage, setUsage] = useState<Usage | null>(null);
  const load = useCallback(() => {
    api
      .service<Bucket[]>("/storage/v1/bucket")
      .then(setBuckets)
      .catch((e) => setError(errorText(e)));
    api
      .admin<Usage>("/admin/v1/storage/usage")
      .then(setUsage)
      .catch(() => setUsage(null));
  }, [api.ref]);
  useEffect(load, [load]);
  const bucket = buckets?.find((b) => b.id === params.bucket);
  return (
    <Flex direction={{ base: "column", md: "row" }} gap="md" align={{ base: "stretch", md: "flex-start" }}>
      <Stack w={{ base: "100%", md: 200 }} gap={4} style={{ flexShrink: 0 }} component="nav" aria-label="Buckets">
        <Button size="xs" onClick={() => setCreating(true)}>New bucket</Button>
        {error && <Text c="red" size="sm">{error}</Text>}
        {buckets?.map((b) => (
          <NavLink component="button" key={b.id} label={b.name} active={b.id === params.bucket} description={b.public ? "public" : "private"} onClick={() => navigate(`/projects/${api.ref}/storage/${b.id}`)} />
        ))}
        {buckets?.length === 0 && <Text size="sm" c="dimmed">No buckets yet.</Text>}
        {bucket && (
          <Button size="xs" variant="subtle" color="red" onClick={() => setDeleting(bucket)}>Delete bucket</Button>
        )}
        {usage && <UsageMeter usage={usage} />}
      </Stack>
      <div style={{ flex: 1, minWidth: 0 }}>
        {bucket ? <Browser key={bucket.id} bucket={bucket} /> : <Text c="dimmed">Pick a bucket.</Text>}
      </div>
      {creating && <NewBucket onClose={() => setCreating(false)} onDone={(id) => { load(); navigate(`/projects/${api.ref}/storage/${id}`); }} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title={`Delete bucket ${deleting.name}`}
          word={deleting.name}
          what="The bucket and every object in it are deleted."
          onConfirm={async () => {
            await api.service(`/storage/v1/bucket/${encodeURIComponent(deleting.id)}/empty`, { method: "POST" });
            await api.service(`/storage/v1/bucket/${encodeURIComponent(deleting.id)}`, { method: "DELETE" });
            notifyOk("Bucket deleted");
            navigate(`/projects/${api.ref}/storage`);
            load();
          }}
        />
      )}
    </Flex>
  );
}
