//! [`Client`], the blocking wrapper of [`AsyncClient`] for sync code: every method is the
//! async one of the same name, run to completion. It adds nothing of its own.

use super::api::{AsyncClient, ClientError, KeyStatus};
use crate::protocol::{ClusterInfo, KeyLocation, TaskDesc};
use serde::{de::DeserializeOwned, Serialize};

/// A blocking connection to a distd cluster, for sync code. Every method is the
/// [`AsyncClient`] method of the same name, run to completion.
pub struct Client {
    inner: AsyncClient,
}

impl Client {
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        Ok(Client {
            inner: smol::block_on(AsyncClient::connect(addr))?,
        })
    }

    /// The async client underneath, for code that mixes both.
    pub fn as_async(&self) -> &AsyncClient {
        &self.inner
    }

    pub fn unique_key(&self, name: &str) -> String {
        self.inner.unique_key(name)
    }

    pub fn submit(&self, tasks: Vec<TaskDesc>) -> Result<Vec<String>, ClientError> {
        smol::block_on(self.inner.submit(tasks))
    }

    pub fn submit_wanting(&self, tasks: Vec<TaskDesc>, wanted: Vec<String>) -> Result<(), ClientError> {
        smol::block_on(self.inner.submit_wanting(tasks, wanted))
    }

    pub fn submit_fn<A: Serialize>(&self, name: &str, args: &A, deps: &[String]) -> Result<String, ClientError> {
        smol::block_on(self.inner.submit_fn(name, args, deps))
    }

    pub fn map<A: Serialize>(&self, name: &str, args: impl IntoIterator<Item = A>) -> Result<Vec<String>, ClientError> {
        smol::block_on(self.inner.map(name, args))
    }

    pub fn status(&self, key: &str) -> Option<KeyStatus> {
        self.inner.status(key)
    }

    pub fn wait(&self, keys: &[String]) -> Result<(), ClientError> {
        smol::block_on(self.inner.wait(keys))
    }

    pub fn gather(&self, keys: &[String]) -> Result<Vec<Vec<u8>>, ClientError> {
        smol::block_on(self.inner.gather(keys))
    }

    pub fn gather_typed<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, ClientError> {
        smol::block_on(self.inner.gather_typed(keys))
    }

    pub fn scatter(&self, items: Vec<(String, Vec<u8>)>) -> Result<(), ClientError> {
        smol::block_on(self.inner.scatter(items))
    }

    pub fn cancel(&self, keys: &[String]) -> Result<(), ClientError> {
        self.inner.cancel(keys)
    }

    pub fn release(&self, keys: &[String]) -> Result<(), ClientError> {
        self.inner.release(keys)
    }

    pub fn replicate(&self, keys: &[String], replicas: u32) -> Result<(), ClientError> {
        self.inner.replicate(keys, replicas)
    }

    pub fn who_has(&self, keys: &[String]) -> Result<Vec<KeyLocation>, ClientError> {
        smol::block_on(self.inner.who_has(keys))
    }

    pub fn info(&self) -> Result<ClusterInfo, ClientError> {
        smol::block_on(self.inner.info())
    }

    pub fn restart(&self) -> Result<u64, ClientError> {
        smol::block_on(self.inner.restart())
    }

    /// See [`AsyncClient::set_wait_for_workers`].
    pub fn set_wait_for_workers(&self, wait: bool) {
        self.inner.set_wait_for_workers(wait);
    }
}
