//! Files in a private bucket, shared through signed download and upload URLs.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p file-upload
//! ```
//!
//! The service-role key stands for a back end: it owns the bucket and hands
//! out signed URLs. Whoever holds such a URL (a browser, a mail recipient)
//! downloads or uploads with no key at all.

use std::time::{SystemTime, UNIX_EPOCH};

use ferrobase::{BucketOptions, Client, Error, FileOptions, ListOptions};

const BUCKET: &str = "documents";

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;
    let storage = service.storage();

    // A private bucket (kept between runs).
    let private = BucketOptions {
        public: false,
        file_size_limit: Some(1024 * 1024),
        allowed_mime_types: None,
    };
    match storage.create_bucket(BUCKET, private).await {
        Ok(()) => println!("created private bucket {BUCKET}"),
        Err(Error::Api { status: 409, .. }) => println!("bucket {BUCKET} already exists"),
        Err(Error::Api { code, .. }) if code.contains("exists") || code == "Duplicate" => {
            println!("bucket {BUCKET} already exists");
        }
        Err(e) => return Err(e.into()),
    }
    let bucket = storage.from(BUCKET);

    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let folder = format!("run-{run}");
    let report_path = format!("{folder}/report.txt");
    let report = format!("quarterly report, run {run}\n").into_bytes();
    bucket
        .upload(
            &report_path,
            report.clone(),
            FileOptions::content_type("text/plain"),
        )
        .await?;
    println!("uploaded {report_path} ({} bytes)", report.len());
    check(
        bucket.download(&report_path).await? == report,
        "the service key reads the file back",
    )?;

    // A plain HTTP client, with no key: what a browser given the URL does.
    let keyless = ferrobase::reqwest::Client::new();
    let unsigned = keyless
        .get(bucket.get_public_url(&report_path))
        .send()
        .await?;
    check(
        unsigned.status().is_client_error(),
        "the file is not public (the unsigned URL is refused)",
    )?;

    let signed = bucket.create_signed_url(&report_path, 60).await?;
    println!(
        "signed download URL: {}",
        signed.split('?').next().unwrap_or_default()
    );
    let got = keyless.get(&signed).send().await?;
    check(
        got.status().is_success(),
        "the signed URL downloads without a key",
    )?;
    check(
        got.bytes().await?.as_ref() == report.as_slice(),
        "the downloaded bytes match",
    )?;

    // Change one character of the token's signature: refused.
    let mut tampered: Vec<char> = signed.chars().collect();
    let at = tampered.len().saturating_sub(10);
    if let Some(c) = tampered.get_mut(at) {
        *c = if *c == 'x' { 'y' } else { 'x' };
    }
    let tampered: String = tampered.into_iter().collect();
    let refused = keyless.get(&tampered).send().await?;
    check(
        refused.status().is_client_error(),
        "a tampered signed URL is refused",
    )?;

    // A signed upload URL: the holder uploads once, without a key.
    let upload_path = format!("{folder}/from-browser.txt");
    let ticket = bucket.create_signed_upload_url(&upload_path, false).await?;
    let put = keyless
        .put(&ticket.url)
        .header("content-type", "text/plain")
        .body(&b"sent through a signed upload URL"[..])
        .send()
        .await?;
    check(
        put.status().is_success(),
        "the signed upload URL takes the file without a key",
    )?;
    println!("uploaded {upload_path} through a signed upload URL");
    check(
        bucket.download(&upload_path).await? == b"sent through a signed upload URL",
        "the signed upload arrived",
    )?;

    let listed = bucket.list(&folder, ListOptions::default()).await?;
    let mut names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    println!("{folder}: {names:?}");
    check(
        names == ["from-browser.txt", "report.txt"],
        "the folder holds both files",
    )?;

    println!("file-upload example finished");
    Ok(())
}
