from initaudit._cli import main

main()
