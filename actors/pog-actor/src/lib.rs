//! POG actor.
