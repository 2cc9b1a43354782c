module iluvatar.local/kms-server

go 1.26.1

// kms-client v0.2.0: the KMS API Talos v1.13.9 speaks (its go.mod); grpc at Talos v1.13.9's own version.
require (
	github.com/siderolabs/kms-client v0.2.0
	google.golang.org/grpc v1.82.1
)

require (
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
	golang.org/x/text v0.36.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260414002931-afd174a4e478 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
