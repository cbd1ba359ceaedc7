//! The crate's one way to take a lock: a panic on another thread while it
//! held the lock does not poison it for the rest.
//!
//! Every piece of shared state in the crate updates each field in one step
//! under its lock, so a panic in the middle leaves nothing half-written
//! that a later reader could misread; refusing the lock would only turn one
//! panic into many.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `mutex`'s value through `&mut` (no locking), poisoned or not.
#[cfg_attr(not(any(feature = "replay", feature = "serve")), allow(dead_code))]
pub(crate) fn get_mut<T: ?Sized>(mutex: &mut Mutex<T>) -> &mut T {
    mutex.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `lock` shared, poisoned or not.
#[cfg_attr(not(feature = "replay"), allow(dead_code))]
pub(crate) fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `lock` exclusive, poisoned or not.
pub(crate) fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
