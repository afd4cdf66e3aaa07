//! A fixed-capacity ring: its storage is one array allocated when it is made, so a history's
//! memory is fixed by construction — pushing into a full ring overwrites the oldest item.

/// At most `N` items, oldest first; never grows.
#[derive(Debug, Clone)]
pub struct Ring<T: Copy + Default, const N: usize> {
    items: Box<[T; N]>,
    /// Index of the oldest item.
    start: usize,
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Ring {
            items: Box::new([T::default(); N]),
            start: 0,
            len: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> Ring<T, N> {
    /// Bytes of storage, whatever the number of items held.
    pub const STORAGE_BYTES: usize = N * std::mem::size_of::<T>();

    /// Appends `item`, overwriting the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.len < N {
            self.items[(self.start + self.len) % N] = item;
            self.len += 1;
        } else {
            self.items[self.start] = item;
            self.start = (self.start + 1) % N;
        }
    }

    /// The newest item.
    pub fn last_mut(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            return None;
        }
        Some(&mut self.items[(self.start + self.len - 1) % N])
    }

    /// Items oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        (0..self.len).map(move |i| &self.items[(self.start + i) % N])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_the_oldest_when_full() {
        let mut r: Ring<u32, 3> = Ring::default();
        assert!(r.is_empty() && r.last_mut().is_none());
        for i in 1..=5 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [3, 4, 5]);
        *r.last_mut().unwrap() = 9;
        assert_eq!(r.iter().rev().copied().collect::<Vec<_>>(), [9, 4, 3]);
        assert_eq!(r.len(), 3);
        assert_eq!(Ring::<u64, 3>::STORAGE_BYTES, 24);
    }
}
