// Sign in as a platform admin (POST /platform/v1/auth/login).
import { useState } from "react";
import { Alert, Button, Center, Paper, PasswordInput, Stack, TextInput, Title } from "@mantine/core";
import { errorText, request, sessionStore } from "../api/client";
import type { LoginResponse } from "../api/types";

export function SignIn() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const expired = sessionStore.wasExpired();
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await request<LoginResponse>("/platform/v1/auth/login", {
        method: "POST",
        body: { email, password },
        token: "",
      });
      sessionStore.set({ token: r.access_token, email: r.admin.email, expiresAt: Date.now() + r.expires_in * 1000 });
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Center mih="100vh" p="md">
      <Paper withBorder shadow="sm" p="xl" w={380} component="main">
        <form onSubmit={submit}>
          <Stack>
            <Title order={1} size="h3">Sign in to Ferrobase</Title>
            {expired && !error && <Alert color="yellow" title="Session expired">Your session has ended. Sign in again.</Alert>}
            {error && <Alert color="red" title="Sign-in failed">{error}</Alert>}
            <TextInput label="Email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.currentTarget.value)} />
            <PasswordInput label="Password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.currentTarget.value)} />
            <Button type="submit" loading={busy}>Sign in</Button>
          </Stack>
        </form>
      </Paper>
    </Center>
  );
}
