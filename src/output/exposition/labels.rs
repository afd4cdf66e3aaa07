//! The label sets of one render, escaped and formatted once for the catalogue's label names and
//! shared by every family of a group: each GPU's `gpu,uuid`, each published process's (the top N
//! of each up GPU; workload labels empty when unknown) and, for those in a pod, the
//! `vram_process_info` set; MIG and allocation sets are made when those groups are written.

use super::catalogue::{
    ALLOCATION_INFO, BUILD, GPU_INFO, GPU_LABELS, MIG_INFO, PER_MIG, PROCESS_INFO, PROCESS_LABELS,
};
use crate::base::encoder::{label_set, LabelValue};
use crate::model::engine::{GpuView, ProcessView, Snapshot};
use crate::source::sample::{Allocation, MigSample};

use LabelValue::{Number, Text};

/// Subjects of a table, each with its label set.
pub(crate) type Subjects<'a, S> = Vec<(&'a S, String)>;

/// The label sets every render needs whatever the snapshot holds: per GPU, per published process
/// and per published process in a pod (`None` outside one).
pub(crate) struct Labels<'a> {
    s: &'a Snapshot,
    gpu: Vec<String>,
    process: Vec<Vec<String>>,
    info: Vec<Vec<Option<String>>>,
}

fn gpu_values(g: &GpuView) -> [LabelValue<'_>; 2] {
    [Number(g.identity.index.into()), Text(&g.identity.uuid)]
}

impl<'a> Labels<'a> {
    pub(crate) fn new(s: &'a Snapshot, max_processes_per_gpu: usize) -> Self {
        let gpu = s
            .gpus
            .iter()
            .map(|g| label_set(&GPU_LABELS, gpu_values(g)))
            .collect();
        let published = |g: &'a GpuView| {
            let n = if g.up { max_processes_per_gpu } else { 0 };
            g.processes.iter().take(n)
        };
        let process = s
            .gpus
            .iter()
            .map(|g| {
                published(g)
                    .map(|p| {
                        let (ns, pod, container) = p
                            .workload
                            .as_deref()
                            .map(|w| (w.namespace.as_str(), w.pod.as_str(), w.container.as_str()))
                            .unwrap_or(("", "", ""));
                        let [gpu, uuid] = gpu_values(g);
                        label_set(
                            &PROCESS_LABELS,
                            [
                                gpu,
                                uuid,
                                Number(p.pid.into()),
                                Text(&p.name),
                                Text(ns),
                                Text(pod),
                                Text(container),
                            ],
                        )
                    })
                    .collect()
            })
            .collect();
        let info = s
            .gpus
            .iter()
            .map(|g| {
                published(g)
                    .map(|p| {
                        p.workload.as_deref().map(|w| {
                            let [gpu, uuid] = gpu_values(g);
                            label_set(
                                &PROCESS_INFO.labels,
                                [
                                    gpu,
                                    uuid,
                                    Number(p.pid.into()),
                                    Text(&p.name),
                                    Text(&w.pod_uid),
                                    Text(&w.container_id),
                                    Text(w.names.as_str()),
                                ],
                            )
                        })
                    })
                    .collect()
            })
            .collect();
        Labels {
            s,
            gpu,
            process,
            info,
        }
    }

    /// `vram_exporter_build_info`'s label set.
    pub(crate) fn build(&self) -> String {
        label_set(
            &BUILD.labels,
            [
                Text(crate::base::build_info::VERSION),
                Text(crate::base::build_info::REVISION),
                Text(&self.s.driver_version),
            ],
        )
    }

    /// Each GPU with its `gpu,uuid` set.
    pub(crate) fn gpus(&self) -> impl Iterator<Item = (&'a GpuView, &str)> + Clone {
        self.s.gpus.iter().zip(self.gpu.iter().map(String::as_str))
    }

    /// Each GPU with its `vram_gpu_info` set.
    pub(crate) fn gpu_infos(&self) -> Subjects<'a, GpuView> {
        let s: &'a Snapshot = self.s;
        s.gpus
            .iter()
            .map(|g| {
                let [gpu, uuid] = gpu_values(g);
                let set = label_set(
                    &GPU_INFO.labels,
                    [
                        gpu,
                        uuid,
                        Text(&g.identity.model),
                        Text(&g.identity.pci_bus_id),
                    ],
                );
                (g, set)
            })
            .collect()
    }

    /// Each published process with its label set.
    pub(crate) fn processes(&self) -> impl Iterator<Item = (&'a ProcessView, &str)> + Clone {
        self.s
            .gpus
            .iter()
            .zip(&self.process)
            .flat_map(|(g, ls)| g.processes.iter().zip(ls.iter().map(String::as_str)))
    }

    /// Each published process in a pod with its `vram_process_info` set.
    pub(crate) fn process_infos(&self) -> impl Iterator<Item = (&'a ProcessView, &str)> + Clone {
        self.s
            .gpus
            .iter()
            .zip(&self.info)
            .flat_map(|(g, ls)| g.processes.iter().zip(ls))
            .filter_map(|(p, l)| Some((p, l.as_deref()?)))
    }

    /// Each MIG instance with its `vram_mig_info` set and its memory families' set.
    pub(crate) fn migs(&self) -> (Subjects<'a, MigSample>, Subjects<'a, MigSample>) {
        let s: &'a Snapshot = self.s;
        s.gpus
            .iter()
            .flat_map(|g| g.migs.iter().map(move |m| (g, m)))
            .map(|(g, m)| {
                let [gpu, uuid] = gpu_values(g);
                let values = [gpu, uuid, Number(m.index.into()), Text(&m.uuid)];
                let [.., index, mig_uuid] = values;
                let info = label_set(
                    &MIG_INFO.labels,
                    [gpu, uuid, index, mig_uuid, Text(&m.profile)],
                );
                ((m, info), (m, label_set(&PER_MIG.labels, values)))
            })
            .unzip()
    }

    /// Each allocation with its `vram_gpu_allocation_info` set.
    pub(crate) fn allocations(&self) -> Subjects<'a, Allocation> {
        let s: &'a Snapshot = self.s;
        s.gpus
            .iter()
            .flat_map(|g| g.allocations.iter().map(move |a| (g, a)))
            .map(|(g, a)| {
                let [gpu, uuid] = gpu_values(g);
                let set = label_set(
                    &ALLOCATION_INFO.labels,
                    [
                        gpu,
                        uuid,
                        Text(&a.namespace),
                        Text(&a.pod),
                        Text(&a.container),
                        Text(&a.claim),
                    ],
                );
                (a, set)
            })
            .collect()
    }
}

/// The subjects of a table as the catalogue reads them.
pub(crate) fn each<'a, S>(
    subjects: &'a Subjects<'_, S>,
) -> impl Iterator<Item = (&'a S, &'a str)> + Clone {
    subjects.iter().map(|(s, l)| (*s, l.as_str()))
}
