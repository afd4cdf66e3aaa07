//! Tests of the `[kubernetes]` section and of the attributor on hand-written proc roots and
//! pod-resources answers.

use super::*;
use crate::kubernetes::pb::v1::{
    ContainerDevices, ContainerResources, ListPodResourcesResponse, PodResources,
};
