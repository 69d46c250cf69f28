//! `kube-oidc-proxy kubeconfig`: writes a kubeconfig for a pipeline that reaches the API server
//! through the proxy, whose user runs `kube-oidc-proxy credential <provider>` (client-go exec
//! plugin, `client.authentication.k8s.io/v1`, `interactiveMode: Never`).
//!
//! It never writes a `token`: client-go prefers a static token (or a `--token` flag) over
//! `exec` without a word, and a pasted CI token dies within minutes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value};

use crate::credential::cache::write_private;
use crate::credential::{CommonOptions, Provider};

/// `kube-oidc-proxy kubeconfig`: the command line.
#[derive(Debug, Parser)]
#[command(
    name = "kube-oidc-proxy kubeconfig",
    bin_name = "kube-oidc-proxy kubeconfig",
    about = "Writes a kubeconfig that reaches the cluster through the proxy with a CI/CD OIDC \
             token from `kube-oidc-proxy credential`",
    after_help = "Example: kube-oidc-proxy kubeconfig --server https://kube.example.com \
                  --certificate-authority ca.crt --output \"$RUNNER_TEMP/kubeconfig\" \
                  github-actions --audience https://kube.example.com"
)]
pub struct KubeconfigArgs {
    /// The proxy's URL.
    #[arg(long)]
    pub server: String,
    /// PEM file of the CA that signed the proxy's serving certificate (default: the system's
    /// roots, as kubectl's).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
    /// Refer to --certificate-authority by its path instead of embedding its contents.
    #[arg(long, requires = "certificate_authority")]
    pub ca_by_path: bool,
    /// TLS server name to verify, when it differs from the URL's host.
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// The default namespace of the context.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Name of the cluster, user and context entries.
    #[arg(long, default_value = "kube-oidc-proxy")]
    pub name: String,
    /// The plugin to run: an absolute path, or a name looked up on PATH when kubectl runs.
    /// [default: this binary's absolute path]
    #[arg(long, value_name = "COMMAND")]
    pub plugin_command: Option<String>,
    /// Where to write the kubeconfig (mode 0600; replaced if it exists); `-` for stdout.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
    #[command(flatten)]
    pub options: CommonOptions,
    #[command(subcommand)]
    pub provider: Provider,
}

/// The kubeconfig as JSON (written out as YAML).
pub fn kubeconfig(args: &KubeconfigArgs, plugin_command: &str) -> Result<Value, String> {
    let mut cluster = json!({ "server": args.server });
    if let Some(ca) = &args.certificate_authority {
        if args.ca_by_path {
            cluster["certificate-authority"] =
                json!(std::path::absolute(ca).map_err(|e| format!("{}: {e}", ca.display()))?);
        } else {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("{} holds no PEM certificate", ca.display()));
            }
            cluster["certificate-authority-data"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
    }
    if let Some(name) = &args.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    // kubectl runs the plugin in its own working directory: relative paths would break.
    let absolute =
        |path: &PathBuf| std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut options = args.options.clone();
    if let Some(dir) = &options.cache_dir {
        options.cache_dir = Some(absolute(dir)?);
    }
    let provider = match &args.provider {
        Provider::File { path } => Provider::File {
            path: absolute(path)?,
        },
        other => other.clone(),
    };
    let mut exec_args = vec!["credential".to_owned()];
    exec_args.extend(options.to_args());
    exec_args.extend(provider.to_args());
    let mut context = json!({ "cluster": args.name, "user": args.name });
    if let Some(ns) = &args.namespace {
        context["namespace"] = json!(ns);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": args.name, "cluster": cluster }],
        "users": [{
            "name": args.name,
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": plugin_command,
                    "args": exec_args,
                    "interactiveMode": "Never",
                    "provideClusterInfo": false,
                    "installHint": "kube-oidc-proxy (the binary that wrote this kubeconfig) \
                                    provides the `credential` plugin; put it on PATH or pass \
                                    --plugin-command",
                },
            },
        }],
        "contexts": [{ "name": args.name, "context": context }],
        "current-context": args.name,
    }))
}

/// `kube-oidc-proxy kubeconfig …` as a program: `args` starts with `kubeconfig`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = KubeconfigArgs::parse_from(args);
    let command = match &args.plugin_command {
        Some(command) => command.clone(),
        None => match std::env::current_exe() {
            Ok(path) => path.display().to_string(),
            Err(e) => {
                eprintln!("kube-oidc-proxy kubeconfig: error: cannot find this binary's path ({e}); pass --plugin-command");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = kubeconfig(&args, &command).and_then(|config| {
        let yaml = serde_saphyr::to_string(&config).map_err(|e| e.to_string())?;
        if args.output == Path::new("-") {
            print!("{yaml}");
            Ok(())
        } else {
            write_private(&args.output, yaml.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", args.output.display()))
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-oidc-proxy kubeconfig: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> KubeconfigArgs {
        KubeconfigArgs::try_parse_from(std::iter::once("kubeconfig").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_user_runs_the_plugin_and_has_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let args = parse(&[
            "--server=https://kube.example.com",
            "--certificate-authority",
            ca.to_str().unwrap(),
            "--namespace=shop",
            "--cache-dir=/tmp/c",
            "github-actions",
            "--audience=https://kube.example.com",
        ]);
        let config = kubeconfig(&args, "/usr/local/bin/kube-oidc-proxy").unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"],
            json!({
                "server": "https://kube.example.com",
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(pem),
            })
        );
        assert_eq!(
            config["users"][0]["user"]["exec"]["args"],
            json!([
                "credential",
                "--cache-dir",
                "/tmp/c",
                "github-actions",
                "--audience",
                "https://kube.example.com"
            ])
        );
        let user = config["users"][0]["user"].as_object().unwrap();
        assert_eq!(user.keys().collect::<Vec<_>>(), ["exec"]);
        assert_eq!(
            user["exec"]["apiVersion"],
            "client.authentication.k8s.io/v1"
        );
        assert_eq!(user["exec"]["interactiveMode"], "Never");
        assert_eq!(user["exec"]["command"], "/usr/local/bin/kube-oidc-proxy");
        assert_eq!(config["contexts"][0]["context"]["namespace"], "shop");

        let by_path = parse(&[
            "--server=https://kube.example.com",
            "--certificate-authority",
            ca.to_str().unwrap(),
            "--ca-by-path",
            "file",
            "--path=/var/run/secrets/tokens/kube",
        ]);
        let config = kubeconfig(&by_path, "kube-oidc-proxy").unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority"],
            ca.to_str().unwrap()
        );

        // Relative paths are made absolute: kubectl runs the plugin in its own directory.
        let relative = parse(&[
            "--server=https://k",
            "--cache-dir=c",
            "file",
            "--path=token",
        ]);
        let config = kubeconfig(&relative, "kube-oidc-proxy").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            config["users"][0]["user"]["exec"]["args"],
            json!([
                "credential",
                "--cache-dir",
                cwd.join("c"),
                "file",
                "--path",
                cwd.join("token")
            ])
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "nothing").unwrap();
        let args = parse(&[
            "--server=https://k",
            "--certificate-authority",
            ca.to_str().unwrap(),
            "gitlab",
        ]);
        assert!(kubeconfig(&args, "x")
            .unwrap_err()
            .contains("no PEM certificate"));
    }

    #[test]
    fn writes_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "old").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
