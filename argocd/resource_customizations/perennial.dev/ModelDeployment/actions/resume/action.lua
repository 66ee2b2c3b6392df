-- Resume automatic retrains: spec.suspend: false.
obj.spec.suspend = false
return obj
