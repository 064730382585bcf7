//! [`ConnectionLimiter`]: how many connections a listener holds, in all and
//! per peer address.
//!
//! A listener asks [`ConnectionLimiter::try_admit`] for each accepted
//! socket and keeps the returned [`Admission`] for the connection's life;
//! dropping it (however the connection ends: return, error, cancellation,
//! panic) gives the places back, so the counts stay exact under churn. A
//! refusal says which limit applied, for the listener's log and its
//! [`Observer::connection_refused`](crate::observe::Observer::connection_refused).
//!
//! ```
//! use std::net::IpAddr;
//! use arcly_core::limit::ConnectionLimiter;
//! use arcly_core::observe::RefuseReason;
//!
//! let limiter = ConnectionLimiter::new(3, 2);
//! let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
//! let first = limiter.try_admit(a).unwrap();
//! let _second = limiter.try_admit(a).unwrap();
//! assert_eq!(limiter.try_admit(a).unwrap_err(), RefuseReason::PerIpLimit);
//! let _third = limiter.try_admit(b).unwrap();
//! assert_eq!(limiter.try_admit(b).unwrap_err(), RefuseReason::GlobalLimit);
//! drop(first);
//! assert!(limiter.try_admit(a).is_ok());
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::observe::RefuseReason;

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Shared {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

/// Connection limits of one listener. Cheap to clone (one shared table).
/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

impl ConnectionLimiter {
    /// At most `max_total` connections at once and `max_per_ip` from one
    /// address; 0 means no limit. IPv4 addresses mapped into IPv6 count as
    /// the IPv4 address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        let state = Mutex::new(State::default());
        Self { shared: Arc::new(Shared { max_total, max_per_ip, state }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `ip`, or says which limit is
    /// reached. The place is held until the [`Admission`] is dropped.
    pub fn try_admit(&self, ip: IpAddr) -> Result<Admission, RefuseReason> {
        let ip = ip.to_canonical();
        let Shared { max_total, max_per_ip, .. } = *self.shared;
        let mut state = self.lock();
        if max_total > 0 && state.total >= max_total {
            return Err(RefuseReason::GlobalLimit);
        }
        let count = state.per_ip.entry(ip).or_insert(0);
        if max_per_ip > 0 && *count >= max_per_ip {
            return Err(RefuseReason::PerIpLimit);
        }
        *count += 1;
        state.total += 1;
        Ok(Admission { limiter: self.clone(), ip })
    }

    /// Connections admitted and not yet released.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections admitted from `ip` and not yet released.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&ip);
                // A burst of many addresses leaves a large table behind.
                let len = state.per_ip.len();
                if state.per_ip.capacity() > 64 && len < state.per_ip.capacity() / 4 {
                    state.per_ip.shrink_to(len * 2);
                }
            }
        }
    }
}

/// A connection's place in a [`ConnectionLimiter`], given back on drop.
#[derive(Debug)]
#[must_use = "the place is given back when the admission is dropped"]
pub struct Admission {
    limiter: ConnectionLimiter,
    ip: IpAddr,
}

impl Admission {
    /// The address the place is counted for.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited_and_mapped_addresses_count_once() {
        let limiter = ConnectionLimiter::new(0, 1);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let held = limiter.try_admit(v4).unwrap();
        assert_eq!(limiter.try_admit(mapped).unwrap_err(), RefuseReason::PerIpLimit);
        let many: Vec<_> = (0..1000u32).map(|i| limiter.try_admit(IpAddr::from(i.to_be_bytes())).unwrap()).collect();
        assert_eq!(limiter.open(), 1001);
        drop(many);
        drop(held);
        assert_eq!((limiter.open(), limiter.open_from(v4)), (0, 0));
        assert!(limiter.lock().per_ip.capacity() <= 128, "the table shrinks after a burst");
    }

    #[test]
    fn counts_stay_exact_under_churn_from_many_threads() {
        let limiter = ConnectionLimiter::new(50, 20);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if let Ok(a) = limiter.try_admit(ip) {
                            assert!(limiter.open_from(ip) <= 20);
                            drop(a);
                        }
                    }
                });
            }
        });
        assert_eq!((limiter.open(), limiter.open_from(ip)), (0, 0));
        let held: Vec<_> = (0..20).map(|_| limiter.try_admit(ip).unwrap()).collect();
        assert!(limiter.try_admit(ip).is_err());
        drop(held);
    }
}
