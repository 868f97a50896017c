//! The locks the bus uses: `parking_lot` normally, and under `--cfg shuttle` the same API over
//! shuttle's model-checked primitives, so `tests/shuttle_model.rs` explores the real code's interleavings.

#[cfg(not(shuttle))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};

#[cfg(shuttle)]
pub(crate) use model::{Condvar, Mutex, MutexGuard};

#[cfg(shuttle)]
#[allow(clippy::unwrap_used, missing_docs)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    pub struct Mutex<T>(shuttle::sync::Mutex<T>);

    pub struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Self(shuttle::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().unwrap()
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().unwrap()
        }
    }

    pub struct Condvar(shuttle::sync::Condvar);

    pub struct WaitResult(bool);

    impl WaitResult {
        pub fn timed_out(&self) -> bool {
            self.0
        }
    }

    impl Condvar {
        pub fn new() -> Self {
            Self(shuttle::sync::Condvar::new())
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }

        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().unwrap();
            guard.0 = Some(self.0.wait(inner).unwrap());
        }

        pub fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: Instant,
        ) -> WaitResult {
            let inner = guard.0.take().unwrap();
            let timeout = deadline.saturating_duration_since(Instant::now());
            let (inner, result) = self.0.wait_timeout(inner, timeout).unwrap();
            guard.0 = Some(inner);
            WaitResult(result.timed_out())
        }
    }
}
