-- 0010_change_to_write: how fresh each run's writes were (bridge status, bridge/pipeline/page.py).
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- change_to_write_seconds: for the last page of the run that wrote something, the seconds from
-- the newest written record's change in Outreach (its updatedAt) to the commit of its write.
-- Pages come sorted by updatedAt, so this is the delay of the run's freshest change.
ALTER TABLE runs ADD COLUMN change_to_write_seconds double precision;
