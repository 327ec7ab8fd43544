//! An agent's output kept within a byte budget: the head (how it started) and the tail (how
//! it ended) survive; the middle is counted.

use std::collections::VecDeque;

pub struct CappedLog {
    half: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: usize,
}

impl CappedLog {
    pub fn new(max: usize) -> Self {
        Self {
            half: max / 2,
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.half.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        for &b in rest {
            if self.tail.len() == self.half {
                self.tail.pop_front();
                self.omitted += 1;
            }
            self.tail.push_back(b);
        }
    }

    pub fn push_line(&mut self, line: &str) {
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    pub fn render(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            out.push_str(&format!("\n[… {} bytes omitted …]\n", self.omitted));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_within_the_budget() {
        let mut log = CappedLog::new(10);
        log.push(b"abcde");
        assert_eq!(log.render(), "abcde");
        log.push(b"fghij");
        assert_eq!(log.render(), "abcdefghij");
        log.push(b"klm");
        assert_eq!(log.render(), "abcde\n[… 3 bytes omitted …]\nijklm");
    }
}
