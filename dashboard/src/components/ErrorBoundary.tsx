// Shows a page's crash as a message (with a way back) instead of a blank screen.
import { Component, type ReactNode } from "react";
import { Alert, Button, Stack } from "@mantine/core";

export class ErrorBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };
  static getDerivedStateFromError(error: Error) {
    return { error };
  }
  render() {
    if (!this.state.error) return this.props.children;
    return (
      <Alert color="red" title="This page failed" role="alert">
        <Stack align="flex-start">
          {this.state.error.message}
          <Button variant="default" onClick={() => this.setState({ error: null })}>Try again</Button>
        </Stack>
      </Alert>
    );
  }
}
