// age v1.3.1: the drill decrypts Arda's etcd snapshots with it, built from this module in the drill's pod (plans.drill).
module iluvatar.local/tools/age

go 1.24.0

tool filippo.io/age/cmd/age

require (
	filippo.io/age v1.3.1 // indirect
	filippo.io/edwards25519 v1.1.0 // indirect
	filippo.io/hpke v0.4.0 // indirect
	filippo.io/nistec v0.0.4 // indirect
	golang.org/x/crypto v0.45.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
	golang.org/x/term v0.37.0 // indirect
)
