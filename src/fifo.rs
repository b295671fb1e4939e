//! [`Fifo`]: a first-in first-out queue that keeps its front element inline.
//!
//! A session keeps a few queues of per-read bookkeeping (when each read came in, how many
//! request bytes it holds) that, for a client waiting for its replies before it sends more —
//! most clients — hold one element at a time. With the front inline, such a client's requests
//! never touch a heap buffer for them: one cache line fewer per request, which at thousands of
//! clients is a cache miss fewer.

use std::collections::VecDeque;

/// A queue whose front element is stored inline; the rest, if any, in a [`VecDeque`].
#[derive(Debug)]
pub struct Fifo<T> {
    /// The oldest element. `None` only when the queue is empty.
    front: Option<T>,
    /// The elements after `front`, oldest first.
    rest: VecDeque<T>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo {
            front: None,
            rest: VecDeque::new(),
        }
    }
}

impl<T> Fifo<T> {
    /// Append `value` at the back.
    #[inline]
    pub fn push_back(&mut self, value: T) {
        if self.front.is_none() {
            self.front = Some(value);
        } else {
            self.rest.push_back(value);
        }
    }

    /// The oldest element.
    #[inline]
    pub fn front(&self) -> Option<&T> {
        self.front.as_ref()
    }

    /// The oldest element, to change in place.
    #[inline]
    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.front.as_mut()
    }

    /// Remove and return the oldest element.
    #[inline]
    pub fn pop_front(&mut self) -> Option<T> {
        let front = self.front.take();
        self.front = self.rest.pop_front();
        front
    }

    /// True when the queue holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.front.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_the_inline_front_and_the_rest() {
        let mut q = Fifo::default();
        assert!(q.is_empty() && q.front().is_none() && q.pop_front().is_none());
        q.push_back(1);
        q.push_back(2);
        q.push_back(3);
        assert_eq!(q.front(), Some(&1));
        assert_eq!(q.pop_front(), Some(1));
        q.push_back(4);
        if let Some(front) = q.front_mut() {
            *front = 20;
        }
        let drained: Vec<i32> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(drained, [20, 3, 4]);
        assert!(q.is_empty());
        q.push_back(5);
        assert_eq!(q.pop_front(), Some(5));
        assert!(q.is_empty());
    }
}
