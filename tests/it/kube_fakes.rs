//! The fakes the Kubernetes attribution tests share: the kubelet's pod-resources server and any
//! tonic service on a unix socket, live child processes (plain, or recording the SIGUSR1s they get),
//! the IDs of test pods and GPUs, and a fake host /proc of cgroup files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::wrappers::UnixListenerStream;
use vram_exporter::source::kubernetes::pb::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};

use vram_testkit::wait::Wait;

use crate::podresources_server::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// The kubelet stand-in: answers List with whatever the test put in `pods`.
#[derive(Clone, Default)]
pub(crate) struct Kubelet {
    pub(crate) pods: Arc<Mutex<Vec<PodResources>>>,
}

#[tonic::async_trait]
impl PodResourcesLister for Kubelet {
    async fn list(
        &self,
        _: tonic::Request<ListPodResourcesRequest>,
    ) -> Result<tonic::Response<ListPodResourcesResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListPodResourcesResponse {
            pod_resources: self.pods.lock().unwrap().clone(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: tonic::Request<AllocatableResourcesRequest>,
    ) -> Result<tonic::Response<AllocatableResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by the exporter"))
    }

    async fn get(
        &self,
        _: tonic::Request<GetPodResourcesRequest>,
    ) -> Result<tonic::Response<GetPodResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by the exporter"))
    }
}

/// A tonic server on a unix socket, on a runtime of its own; dropping it stops the server and
/// removes the socket.
pub(crate) struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    path: PathBuf,
}

impl Server {
    pub(crate) fn start(path: &Path, kubelet: Kubelet) -> Server {
        Server::serve(
            path,
            tonic::transport::Server::builder().add_service(PodResourcesListerServer::new(kubelet)),
        )
    }

    /// Serves `router` (any tonic services) on a unix socket at `path`.
    pub(crate) fn serve(path: &Path, router: tonic::transport::server::Router) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _ = std::fs::remove_file(path);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(path).unwrap()
        };
        runtime.spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
        Server {
            runtime: Some(runtime),
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(crate) fn pod(namespace: &str, name: &str, containers: &[(&str, &[&str])]) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: containers
            .iter()
            .map(|(c, ids)| ContainerResources {
                name: c.to_string(),
                devices: vec![ContainerDevices {
                    resource_name: "nvidia.com/gpu".into(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// A live child process (`sleep`), killed on drop.
pub(crate) struct Kid(Child);

impl Kid {
    pub(crate) fn spawn() -> Kid {
        Kid(Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"))
    }

    pub(crate) fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn uuid(i: u32) -> String {
    format!("GPU-6b75620d-0000-4000-8000-00000000000{i}")
}

pub(crate) fn pod_uid(i: u32) -> String {
    format!("5d1c3a2b-8e7f-4a6b-9c0d-1e2f3a4b5c{i:02}")
}

pub(crate) fn container_id(i: u32) -> String {
    format!("{:064x}", 0xc0ffee_u64 * 1000 + u64::from(i))
}

/// A fake host /proc: `<root>/<pid>/cgroup`.
pub(crate) fn write_cgroup(root: &Path, pid: &str, text: &str) {
    let dir = root.join(pid);
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("cgroup.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("cgroup")).unwrap();
}

/// A live child that records each SIGUSR1 it gets in `<dir>/signals`.
pub(crate) struct Listener {
    pub(crate) kid: Kid,
    signals: PathBuf,
}

impl Listener {
    pub(crate) fn spawn(dir: &Path, name: &str) -> Listener {
        let signals = dir.join(format!("{name}.signals"));
        let ready = dir.join(format!("{name}.ready"));
        let child = Command::new("sh")
            .arg("-c")
            .arg("trap 'echo usr1 >> \"$F\"' USR1; touch \"$R\"; while :; do sleep 0.05; done")
            .env("F", &signals)
            .env("R", &ready)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        Wait::new(format!("{name} to become ready"), WAIT)
            .every(Duration::from_millis(10))
            .must(|| ready.exists().then_some(()).into());
        Listener {
            kid: Kid(child),
            signals,
        }
    }

    pub(crate) fn signals(&self) -> usize {
        std::fs::read_to_string(&self.signals)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}
