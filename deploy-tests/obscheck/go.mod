module github.com/infura-gateway/infura-gateway/deploy-tests/obscheck

go 1.26.0
