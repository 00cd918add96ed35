module example.invalid/flux/bindings/go

go 1.19
