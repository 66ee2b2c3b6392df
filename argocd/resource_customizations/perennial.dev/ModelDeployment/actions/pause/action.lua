-- Pause automatic retrains (Initial, SpecChange, Drift, Schedule): spec.suspend: true.
-- What serves keeps serving; a retrain request still runs.
obj.spec.suspend = true
return obj
