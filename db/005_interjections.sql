-- Schema version 5: where an audience line came from and whom it addressed.
-- `source`: the audience line's way in ('box', 'file', or what an API caller named);
-- `addressed`: the participant an audience line named, or the one a moderator's hand-off
-- gave the question to; `answers`: the node of the audience line a turn answers (the answer
-- itself, or the hand-off). All NULL for turns said before this version.

ALTER TABLE turns ADD COLUMN source TEXT;
ALTER TABLE turns ADD COLUMN addressed TEXT;
ALTER TABLE turns ADD COLUMN answers TEXT;
